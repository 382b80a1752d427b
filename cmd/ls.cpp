#include <cstdio>
#include <memory>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/replica/list_points.h"

namespace walship::cmd {

void add_ls_command(CLI::App& app, const GlobalOptions& /*global*/, Runner& run) {
  struct Args {
    std::string url;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("ls", "List the restore points of a replica, newest first");
  sub->add_option("URL", args->url, "The replica: file:///path, or an absolute path")->required();
  sub->add_flag("--json", args->json, "Print JSON for scripts");
  sub->footer(
      "Examples:\n"
      "  walship ls file:///backups/app\n"
      "  walship ls file:///backups/app --json | jq -r '.[0].txid'");
  sub->callback([args, &run] {
    run = [args] {
      const auto storage = open_replica(args->url);
      const auto points = list_restore_points(*storage, 8);
      const std::string out = args->json ? render_points_json(points) : render_points_table(points);
      std::fwrite(out.data(), 1, out.size(), stdout);
      return 0;
    };
  });
}

}  // namespace walship::cmd
