#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "lib/config/option_defs.h"
#include "lib/replica/control_socket.h"
#include "lib/util/error.h"

namespace walship::cmd {

void add_sync_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::string db;
    std::string timeout = render_duration_ms(k_default_sync_timeout_ms);
    std::string control_socket;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "sync", "Wait until everything committed to a database so far is in every replica (a durable ack)");
  sub->add_option("DB", args->db, "The database a running walship replicate ships")->required();
  sub->add_option("--timeout", args->timeout, "Give up after this long (exit 1)")
      ->type_name("DURATION")
      ->capture_default_str();
  sub->add_option("--control-socket", args->control_socket,
                  "Where the replicate listens (default: DB-walship/control.sock)")
      ->type_name("PATH");
  sub->footer(
      "Asks the replicate that ships DB (over its control socket) to answer once every\n"
      "transaction committed to DB before the request arrived is in a delta on every replica;\n"
      "the replicate ships at once for it, and folds every request waiting into one ship.\n"
      "An app acknowledges a write that must survive the machine after this returns 0. Apps\n"
      "can speak the socket's one-line protocol themselves (docs/DESIGN.md, \"Control socket\";\n"
      "packaging/examples/sync_client.py and sync_client.go).\n"
      "\n"
      "Exit codes: 0 durable, 1 not durable within --timeout, the replica failing or no replicate\n"
      "running for DB, 2 usage error, 4 the replicate was fenced (another writer has the replica).\n"
      "\n"
      "Examples:\n"
      "  walship sync /data/app.db\n"
      "  walship sync --timeout 2s /data/app.db && echo 'order accepted'");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      const std::optional<int64_t> timeout = parse_duration_ms(args->timeout);
      if (!timeout || *timeout <= 0)
        throw UsageError("invalid --timeout '" + args->timeout +
                         "': give a duration such as 500ms, 5s or 1m");
      struct stat st {};
      if (args->control_socket.empty() && ::stat(args->db.c_str(), &st) != 0) {
        throw UsageError("database '" + args->db +
                         "' does not exist: give the path walship replicate ships (or --control-socket)");
      }
      const std::string socket =
          args->control_socket.empty() ? default_control_socket_path(args->db) : args->control_socket;
      std::optional<SyncAnswer> answer;
      try {
        answer = ask_for_sync(socket, *timeout);
      } catch (const Failure& e) {
        throw Failure("'" + args->db + "' is not known to be durable: " + e.what());
      }
      if (!answer) {
        throw Failure("no walship replicate is running for '" + args->db + "' (nothing listens on " + socket +
                      "): start one, or give its --control-socket");
      }
      if (answer->kind == SyncAnswer::Kind::ok) {
        if (global.verbose > 0) std::printf("%s: durable on every replica\n", args->db.c_str());
        return 0;
      }
      if (answer->kind == SyncAnswer::Kind::fenced)
        throw FencedError("'" + args->db + "' is fenced: " + answer->message);
      throw Failure("'" + args->db + "' is not known to be durable: " + answer->message);
    };
  });
}

}  // namespace walship::cmd
