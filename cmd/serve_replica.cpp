#include <arpa/inet.h>
#include <httplib.h>

#include <array>
#include <memory>
#include <thread>

#include "cmd/commands.h"
#include "cmd/storage_open.h"
#include "lib/config/config.h"
#include "lib/replica/follower.h"
#include "lib/util/error.h"
#include "lib/util/log.h"
#include "lib/util/time.h"

namespace walship::cmd {

namespace {

int64_t duration_arg(const std::string& flag, const std::string& text) {
  const std::optional<int64_t> ms = parse_duration_ms(text);
  if (!ms || *ms <= 0)
    throw UsageError("invalid " + flag + " '" + text + "': give a duration such as 100ms, 1s, 5m or 1h");
  return *ms;
}

// "ipv4:port", "[ipv6]:port" or "localhost:port". Addresses only, never
// names: cpp-httplib binds through getaddrinfo, which resolves a numeric
// address without glibc's NSS, so the static binary serves --http anywhere.
std::pair<std::string, int> parse_listen_address(const std::string& text) {
  const size_t colon = text.rfind(':');
  std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
  const bool digits =
      !port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos;
  if (host.empty() || !digits || std::stoi(port) > 65535) {
    throw UsageError("invalid --http '" + text + "': give an address and port, e.g. 127.0.0.1:9090");
  }
  if (host == "localhost") host = "127.0.0.1";
  std::array<unsigned char, 16> address{};
  if (::inet_pton(AF_INET, host.c_str(), address.data()) != 1 &&
      ::inet_pton(AF_INET6, host.c_str(), address.data()) != 1) {
    throw UsageError("invalid --http '" + text + "': '" + host +
                     "' is not an IP address; give one, e.g. 127.0.0.1:9090 or [::1]:9090");
  }
  return {host, std::stoi(port)};
}

// /healthz and /metrics, served from a thread of their own while the
// follower runs.
class HttpListener {
 public:
  HttpListener(const std::string& address, FollowMonitor& monitor, int64_t max_lag_ms) {
    const auto [host, port] = parse_listen_address(address);
    m_server.Get("/healthz", [&monitor, max_lag_ms](const httplib::Request&, httplib::Response& res) {
      bool healthy = false;
      res.set_content(format_health(monitor.snapshot(), now_ms(), max_lag_ms, healthy), "application/json");
      res.status = healthy ? 200 : 503;
    });
    m_server.Get("/metrics", [&monitor](const httplib::Request&, httplib::Response& res) {
      res.set_content(format_metrics(monitor.snapshot(), now_ms()),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    if (!m_server.bind_to_port(host, port)) {
      throw UsageError("unable to listen on --http " + address +
                       ": the port is in use or the address is not local; choose another");
    }
    m_thread = std::thread([this] { m_server.listen_after_bind(); });
    log(LogLevel::info, "http listening", {{"address", address}});
  }
  ~HttpListener() {
    m_server.stop();
    if (m_thread.joinable()) m_thread.join();
  }
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

 private:
  httplib::Server m_server;
  std::thread m_thread;
};

}  // namespace

void add_serve_replica_command(CLI::App& app, const GlobalOptions& global, Runner& run) {
  struct Args {
    std::string url;
    FollowOptions options;
    std::string poll_interval = "1s";
    std::string list_interval = "60s";
    std::string max_lag = "10s";
    std::string http;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "serve-replica",
      "Keep a live local copy of a replica that readers open read-only, transaction by transaction");
  sub->add_option("URL", args->url, "The replica: file:///path, gs://..., sftp://...")->required();
  sub->add_option("PATH", args->options.db_path, "The local database (restored first if missing)")
      ->required();
  sub->add_option("--poll-interval", args->poll_interval, "Look for the next delta (one GET) this often")
      ->capture_default_str();
  sub->add_option(
         "--list-interval", args->list_interval,
         "List the replica this often, to catch up through compacted deltas or follow a new snapshot")
      ->capture_default_str();
  sub->add_option("--http", args->http, "Serve /healthz and /metrics on this address, e.g. 127.0.0.1:9090");
  sub->add_option("--max-lag", args->max_lag, "/healthz answers 503 when the lag is above this")
      ->capture_default_str();
  sub->add_option("--checkpoint-pages", args->options.checkpoint_pages,
                  "Checkpoint (PASSIVE) the local WAL past this many pages")
      ->check(CLI::Range(1, 0x7fffffff))
      ->capture_default_str();
  sub->add_option("--parallelism", args->options.parallelism, "Downloads in flight while catching up")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->footer(
      "Each delta is applied in ONE SQLite write transaction (pages and size together) after its\n"
      "chain and whole-database checksum are checked, so a reader that opens PATH read-only always\n"
      "sees a whole transaction of the writer. serve-replica must be the only writer of PATH: it\n"
      "refuses a database walship replicate or another serve-replica works on. SIGTERM/SIGINT stop\n"
      "it between transactions (exit 0); a restart resumes from where PATH is.\n"
      "\n"
      "Examples:\n"
      "  walship serve-replica file:///backups/app /data/replica.db\n"
      "  walship serve-replica --poll-interval 100ms --http 127.0.0.1:9090 gs://bucket/app /data/replica.db\n"
      "  sqlite3 'file:/data/replica.db?mode=ro' 'SELECT count(*) FROM orders'");
  sub->callback([args, &global, &run] {
    run = [args, &global] {
      FollowOptions& options = args->options;
      options.quiet = global.quiet;
      options.poll_interval_ms = duration_arg("--poll-interval", args->poll_interval);
      options.list_interval_ms = duration_arg("--list-interval", args->list_interval);
      const int64_t max_lag_ms = duration_arg("--max-lag", args->max_lag);
      const auto storage = open_replica(args->url);
      FollowMonitor monitor;
      std::unique_ptr<HttpListener> http;
      if (!args->http.empty()) http = std::make_unique<HttpListener>(args->http, monitor, max_lag_ms);
      return run_serve_replica(options, *storage, monitor);
    };
  });
}

}  // namespace walship::cmd
