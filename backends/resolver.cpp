#include "backends/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>

#include "lib/util/error.h"

namespace walship {

namespace {

std::once_flag g_ares_init;

struct Lookup {
  bool done = false;
  int status = ARES_SUCCESS;
  std::vector<ResolvedAddress> addresses;
};

void on_result(void* arg, int status, int /*timeouts*/, ares_addrinfo* info) {
  auto* lookup = static_cast<Lookup*>(arg);
  lookup->done = true;
  lookup->status = status;
  if (info == nullptr) return;
  for (const ares_addrinfo_node* node = info->nodes; node != nullptr; node = node->ai_next) {
    if (node->ai_addr == nullptr || node->ai_addrlen > sizeof(sockaddr_storage)) continue;
    ResolvedAddress a;
    std::memcpy(&a.address, node->ai_addr, node->ai_addrlen);
    a.length = static_cast<socklen_t>(node->ai_addrlen);
    a.family = node->ai_family;
    lookup->addresses.push_back(a);
  }
  ares_freeaddrinfo(info);
}

bool is_localhost(const std::string& host) {
  std::string lower = host;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower == "localhost" || lower == "localhost.";
}

std::vector<ResolvedAddress> loopback(uint16_t port) {
  ResolvedAddress v4;
  auto* in4 = reinterpret_cast<sockaddr_in*>(&v4.address);
  in4->sin_family = AF_INET;
  in4->sin_port = htons(port);
  in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  v4.length = sizeof(sockaddr_in);
  v4.family = AF_INET;
  ResolvedAddress v6;
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&v6.address);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  in6->sin6_addr = in6addr_loopback;
  v6.length = sizeof(sockaddr_in6);
  v6.family = AF_INET6;
  return {v4, v6};
}

struct ChannelDeleter {
  void operator()(ares_channel channel) const { ares_destroy(channel); }
};

}  // namespace

std::vector<ResolvedAddress> resolve_host(const std::string& host, uint16_t port, const std::string& where,
                                          int timeout_ms) {
  if (is_localhost(host)) return loopback(port);
  std::call_once(g_ares_init, [] { ares_library_init(ARES_LIB_INIT_ALL); });

  ares_channel raw = nullptr;
  if (const int rc = ares_init(&raw); rc != ARES_SUCCESS) {
    throw StorageError("unable to resolve " + where + ": " + ares_strerror(rc), true);
  }
  std::unique_ptr<std::remove_pointer_t<ares_channel>, ChannelDeleter> channel(raw);

  Lookup lookup;
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = ARES_AI_NUMERICSERV;
  const std::string service = std::to_string(port);
  ares_getaddrinfo(channel.get(), host.c_str(), service.c_str(), &hints, on_result, &lookup);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!lookup.done) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ares_cancel(channel.get());  // calls on_result with ARES_ECANCELLED
      lookup.status = ARES_ETIMEOUT;
      break;
    }
    ares_socket_t sockets[ARES_GETSOCK_MAXNUM];
    const int mask = ares_getsock(channel.get(), sockets, ARES_GETSOCK_MAXNUM);
    std::vector<pollfd> fds;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short events = 0;
      if (ARES_GETSOCK_READABLE(mask, i)) events |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(mask, i)) events |= POLLOUT;
      if (events != 0) fds.push_back(pollfd{sockets[i], events, 0});
    }
    timeval max{left.count() / 1000, static_cast<suseconds_t>((left.count() % 1000) * 1000)};
    timeval next{};
    const timeval* wait = ares_timeout(channel.get(), &max, &next);
    const int wait_ms = static_cast<int>(wait->tv_sec * 1000 + (wait->tv_usec + 999) / 1000);
    const int ready = ::poll(fds.data(), fds.size(), wait_ms);
    if (ready <= 0) {
      ares_process_fd(channel.get(), ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts and retries
      continue;
    }
    for (const pollfd& p : fds) {
      const bool readable = (p.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
      const bool writable = (p.revents & POLLOUT) != 0;
      if (readable || writable) {
        ares_process_fd(channel.get(), readable ? p.fd : ARES_SOCKET_BAD, writable ? p.fd : ARES_SOCKET_BAD);
      }
    }
  }

  if (lookup.status != ARES_SUCCESS || lookup.addresses.empty()) {
    const int status = lookup.status == ARES_SUCCESS ? ARES_ENODATA : lookup.status;
    const bool transient = status != ARES_ENOTFOUND && status != ARES_ENODATA && status != ARES_EBADNAME;
    const std::string cause = status == ARES_ETIMEOUT ? std::string("the name server did not answer in time")
                                                      : std::string(ares_strerror(status));
    throw StorageError("unable to resolve " + where + ": " + cause, transient);
  }
  return lookup.addresses;
}

}  // namespace walship
