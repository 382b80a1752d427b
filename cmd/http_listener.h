// The HTTP listener of `replicate --http` and `serve-replica --http`:
// /metrics (Prometheus text), /healthz (alive: 200 while it answers) and
// /readyz (200 when every database is ready and within max-lag, else 503),
// both with the same JSON body, for every database on a StatusBoard, served by
// cpp-httplib from threads of its own while the command runs; for replicate,
// also POST /sync?db=PATH&timeout=DURATION, the control socket's "sync"
// (control_socket.h) over HTTP.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "lib/config/config.h"
#include "lib/replica/status_board.h"

namespace walship::cmd {

// The control socket of a database replicate ships (as given or absolute);
// nullopt for any other path.
using ControlSocketOf = std::function<std::optional<std::string>(const std::string& db)>;

class HttpListener {
 public:
  // Binds `address` ("127.0.0.1:9090", ":9090" for every interface; `what` names where it came from in
  // messages: "--http", "'http' in FILE") and starts serving. Throws
  // UsageError for a bad address or one that cannot be bound.
  // `control_socket_of`: set for replicate (POST /sync); empty otherwise.
  HttpListener(const std::string& address, const std::string& what, const StatusBoard& board,
               int64_t max_lag_ms, ControlSocketOf control_socket_of = {});
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// --http and --max-lag, as replicate and serve-replica register them.
struct HttpFlags {
  std::string http;
  std::string max_lag = "10s";
  CLI::Option* http_option = nullptr;
  CLI::Option* max_lag_option = nullptr;
};
void add_http_flags(CLI::App& sub, HttpFlags& flags);

// The listener the flags ask for, else the one walship.toml's `http` and
// `max-lag` ask for (`config`, read from `config_path`; null: no file); null
// when neither names an address. Throws UsageError (bad address or lag,
// address in use).
std::unique_ptr<HttpListener> start_http(const HttpFlags& flags, const ReplicateConfig* config,
                                         const std::string& config_path, const StatusBoard& board,
                                         ControlSocketOf control_socket_of = {});

}  // namespace walship::cmd
