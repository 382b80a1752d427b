#include "cmd/http_listener.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "lib/config/config.h"
#include "lib/config/option_defs.h"
#include "lib/replica/control_socket.h"
#include "lib/util/error.h"
#include "lib/util/listen_address.h"
#include "lib/util/log.h"
#include "lib/util/time.h"

namespace walship::cmd {

using namespace std::chrono_literals;

namespace {

// POST /sync?db=PATH[&timeout=DURATION]: asks the database's control socket
// and answers with its line: 200 ok, 504 timeout, 409 fenced, 503 error;
// 400 a bad query, 404 a database this replicate does not ship.
void serve_sync(const httplib::Request& req, httplib::Response& res,
                const ControlSocketOf& control_socket_of) {
  const auto reply = [&res](int status, const std::string& body) {
    res.status = status;
    res.set_content(body + "\n", "text/plain; charset=utf-8");
  };
  const std::string db = req.get_param_value("db");
  if (db.empty()) return reply(400, "error give the database: POST /sync?db=PATH");
  int64_t timeout_ms = k_default_sync_timeout_ms;
  if (req.has_param("timeout")) {
    const std::optional<int64_t> given = parse_duration_ms(req.get_param_value("timeout"));
    if (!given || *given <= 0)
      return reply(400, "error invalid timeout: give a duration such as 500ms, 5s or 1m");
    timeout_ms = *given;
  }
  const std::optional<std::string> socket = control_socket_of(db);
  if (!socket) return reply(404, "error this replicate does not ship '" + db + "'");
  std::optional<SyncAnswer> answer;
  try {
    answer = ask_for_sync(*socket, timeout_ms);
  } catch (const Error& e) {
    return reply(503, std::string("error ") + e.what());
  }
  if (!answer) return reply(503, "error the database's control socket is not open yet: try again");
  const int status = answer->kind == SyncAnswer::Kind::ok        ? 200
                     : answer->kind == SyncAnswer::Kind::timeout ? 504
                     : answer->kind == SyncAnswer::Kind::fenced  ? 409
                                                                 : 503;
  reply(status, answer->line);
}

}  // namespace

struct HttpListener::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> listen_ended{false};
};

HttpListener::HttpListener(const std::string& address, const std::string& what, const StatusBoard& board,
                           int64_t max_lag_ms, ControlSocketOf control_socket_of)
    : m_impl(std::make_unique<Impl>()) {
  // ":9090" is every interface, as Prometheus exporters write it.
  const ListenAddress listen =
      parse_listen_address(address.starts_with(':') ? "0.0.0.0" + address : address, what);
  httplib::Server& server = m_impl->server;
  // /healthz: alive (the process answers), whatever its databases say; the
  // body says how each one is. /readyz: 200 only when every database is
  // restored or started, its last step had no error and it is within max-lag.
  server.Get("/healthz", [&board, max_lag_ms](const httplib::Request&, httplib::Response& res) {
    bool healthy = false;
    res.set_content(board.health(now_ms(), max_lag_ms, healthy), "application/json");
    res.status = 200;
  });
  server.Get("/readyz", [&board, max_lag_ms](const httplib::Request&, httplib::Response& res) {
    bool healthy = false;
    res.set_content(board.health(now_ms(), max_lag_ms, healthy), "application/json");
    res.status = healthy ? 200 : 503;
  });
  server.Get("/metrics", [&board](const httplib::Request&, httplib::Response& res) {
    res.set_content(board.metrics(now_ms()), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (control_socket_of) {
    server.Post("/sync", [control_socket_of](const httplib::Request& req, httplib::Response& res) {
      serve_sync(req, res, control_socket_of);
    });
  }
  if (!server.bind_to_port(listen.host, listen.port)) {
    throw UsageError("unable to listen on " + address + " (" + what +
                     "): the port is in use or the address is not local; choose another");
  }
  m_impl->thread = std::thread([this] {
    m_impl->server.listen_after_bind();
    m_impl->listen_ended = true;
  });
  log(LogLevel::info, "http listening", {{"address", address}});
}

HttpListener::~HttpListener() {
  // stop() does nothing before listen_after_bind() has begun, which would
  // then serve for ever: a command that fails right after its start hung
  // here. Wait for it to begin (at once), or to have ended (it could not run).
  while (!m_impl->server.is_running() && !m_impl->listen_ended) std::this_thread::sleep_for(1ms);
  m_impl->server.stop();
  if (m_impl->thread.joinable()) m_impl->thread.join();
}

void add_http_flags(CLI::App& sub, HttpFlags& flags) {
  flags.http_option = sub.add_option(
      "--http", flags.http,
      "Serve /healthz, /readyz and /metrics on this IP address and port, e.g. 127.0.0.1:9090, or :9090 for "
      "every interface (default: walship.toml's http)");
  flags.max_lag_option =
      sub.add_option(
             "--max-lag", flags.max_lag,
             "/readyz answers 503 when a database lags more than this (default: walship.toml's max-lag)")
          ->capture_default_str();
}

std::unique_ptr<HttpListener> start_http(const HttpFlags& flags, const ReplicateConfig* config,
                                         const std::string& config_path, const StatusBoard& board,
                                         ControlSocketOf control_socket_of) {
  const std::optional<int64_t> given = parse_duration_ms(flags.max_lag);
  if (!given || *given <= 0) {
    throw UsageError("invalid --max-lag '" + flags.max_lag +
                     "': give a duration such as 100ms, 1s, 5m or 1h");
  }
  int64_t max_lag_ms = *given;
  if (flags.max_lag_option->count() == 0 && config && config->max_lag_ms) max_lag_ms = *config->max_lag_ms;
  if (flags.http_option->count() > 0)
    return std::make_unique<HttpListener>(flags.http, "--http", board, max_lag_ms,
                                          std::move(control_socket_of));
  if (config && !config->http.empty()) {
    return std::make_unique<HttpListener>(config->http, "'http' in " + config_path, board, max_lag_ms,
                                          std::move(control_socket_of));
  }
  return nullptr;
}

}  // namespace walship::cmd
