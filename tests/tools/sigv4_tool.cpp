// walship-sigv4-tool: signs requests with walship's S3 signer, for
// tests/integration/test_s3_signer_botocore.py to compare with botocore. Built
// only with the tests.
//
// Reads one JSON object per line on stdin:
//   {"method": "PUT", "path": "/bucket/a b", "query": [["prefix", "x/y"]],
//    "headers": [["Host", "..."], ["X-Amz-Date", "..."]], "payload_hash": "...",
//    "access_key_id": "...", "secret_access_key": "...", "session_token": "...",
//    "region": "us-east-1", "service": "s3", "amz_date": "20261201T120000Z"}
// where "path" is decoded (the tool encodes it as walship encodes an object
// key, uri_encode(path, false)) and the query is decoded. Writes one JSON
// object per line on stdout: {"authorization": ..., "canonical_request": ...}.
#include <exception>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "backends/s3/s3_signer.h"

namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

Pairs pairs_of(const nlohmann::json& list) {
  Pairs out;
  for (const auto& pair : list)
    out.emplace_back(pair.at(0).get<std::string>(), pair.at(1).get<std::string>());
  return out;
}

}  // namespace

int main() {
  using namespace walship::s3;
  std::string line;
  int line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.empty()) continue;
    try {
      const nlohmann::json in = nlohmann::json::parse(line);
      SigningRequest request;
      request.method = in.at("method").get<std::string>();
      request.canonical_uri = uri_encode(in.at("path").get<std::string>(), false);
      request.query = pairs_of(in.at("query"));
      request.headers = pairs_of(in.at("headers"));
      request.payload_hash = in.at("payload_hash").get<std::string>();
      const Credentials credentials{in.at("access_key_id").get<std::string>(),
                                    in.at("secret_access_key").get<std::string>(),
                                    in.value("session_token", std::string())};
      const std::string region = in.at("region").get<std::string>();
      const std::string service = in.at("service").get<std::string>();
      const std::string amz_date = in.at("amz_date").get<std::string>();
      const nlohmann::json out = {
          {"authorization", authorization(request, credentials, region, service, amz_date)},
          {"canonical_request", canonical_request(request)},
      };
      std::cout << out.dump() << '\n';
    } catch (const std::exception& e) {
      std::cerr << "walship-sigv4-tool: line " << line_number << ": " << e.what() << '\n';
      return 1;
    }
  }
  std::cout.flush();
  return std::cout.good() ? 0 : 1;
}
