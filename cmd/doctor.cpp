#include "lib/storage/doctor.h"

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/util/error.h"
#include "lib/util/time.h"

namespace walship::cmd {

void add_doctor_command(CLI::App& app, Runner& run) {
  struct Args {
    std::string url;
    ConfigFlags config;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "doctor",
      "Check that a replica's storage works: backend, credentials' source, access, conditional writes");
  sub->add_option("URL", args->url,
                  "The replica: file:///path, s3://bucket/prefix, gs://bucket/prefix, sftp://user@host/path "
                  "or /abs/path; with --config, the database's path");
  add_config_flags(*sub, args->config);
  sub->footer(
      "Opens the replica's storage and prints, one per line: the backend; where its credentials come\n"
      "from (S3: the replica's options, the environment, a profile in a file, a web identity role,\n"
      "a credential_process, container credentials or the EC2 instance profile's role; GCS: a key\n"
      "file, an external_account file (workload identity federation), the metadata server, or none\n"
      "with an emulator; SFTP: the password, a key or the agent), never a secret; when temporary\n"
      "credentials expire; the result of one LIST (of snapshots/); and whether the store honours\n"
      "conditional writes (S3 learns it by writing a probe object twice, then deletes it).\n"
      "\n"
      "Exit codes: 0 the storage works, 1 it does not (the LIST failed), 2 usage or configuration\n"
      "error (a bad URL, credentials file or option).\n"
      "\n" +
      std::string(k_config_help) +
      "\n"
      "Examples:\n"
      "  walship doctor file:///backups/app\n"
      "  walship doctor gs://bucket/app\n"
      "  walship doctor --config /etc/walship/walship.toml /data/app.db");
  sub->callback([args, &run] {
    run = [args] {
      const ChosenReplica replica = choose_replica(args->config, args->url, "doctor");
      const DoctorReport report = run_doctor(*replica.storage);
      const std::string out = render_doctor(report, now_ms());
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
      if (!report.ok()) throw Failure("doctor: " + report.list_error);
      return 0;
    };
  });
}

}  // namespace walship::cmd
