// s3:// URLs and settings, pure: the URL's options, then the region,
// endpoint and credentials from the environment and the AWS CLI's files,
// read through injected functions so every rule is unit-tested without
// touching the real environment or home directory.
//
//   s3://bucket/prefix[?option=value...]
//
// Options (URL query or the replica's settings in walship.toml):
//   endpoint              base URL of an S3-compatible store (default: AWS; also
//                         $AWS_ENDPOINT_URL_S3, then $AWS_ENDPOINT_URL)
//   region                signing region (default: $AWS_REGION, $AWS_DEFAULT_REGION,
//                         the profile's region in ~/.aws/config, then us-east-1)
//   path-style            true: https://endpoint/bucket/key; false: https://bucket.endpoint/key
//                         (default: true with a custom endpoint, or a bucket name that is no
//                         host name label: dots, upper case, '_')
//   ca-file               PEM bundle to verify the server with (default: the system's, or $AWS_CA_BUNDLE)
//   insecure-skip-verify  true: do not verify the server's certificate (warned about)
//                         Booleans are exactly true or false, and no option takes an empty
//                         value (an unset ${VAR} must not turn verification off).
//   profile               profile of ~/.aws/credentials and ~/.aws/config (default: $AWS_PROFILE, default)
//   access-key-id, secret-access-key, session-token   keys for this replica only
//   multipart-threshold   objects of at least this many bytes go in a multipart upload (default 16 MiB)
//   part-size             bytes per part, at least 5 MiB (default 8 MiB; grown to stay within 10000 parts)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>

#include "backends/s3/s3_signer.h"
#include "backends/url.h"

namespace walship::s3 {

inline constexpr uint64_t k_min_part_size = uint64_t{5} << 20;
inline constexpr uint64_t k_max_part_size = uint64_t{5} << 30;
inline constexpr uint64_t k_max_parts = 10000;

struct Options {
  std::string bucket;
  std::string prefix;    // without leading or trailing '/'; may be empty
  std::string endpoint;  // "scheme://host[:port]" without a trailing '/'; empty: from the environment or AWS
  std::string region;    // empty: from the environment, config file or us-east-1
  std::optional<bool> path_style;
  std::string ca_file;
  bool insecure_skip_verify = false;
  std::string profile;
  Credentials credentials;  // from the options; empty: from the environment or files
  uint64_t multipart_threshold = uint64_t{16} << 20;
  uint64_t part_size = uint64_t{8} << 20;
};

// The options s3:// takes, with their kinds.
std::span<const OptionSpec> option_specs();

// Validates a parsed s3:// URL and its options. Throws UsageError naming the
// (redacted) URL for a missing or malformed bucket, a user/port, an unknown
// option, a bad boolean or size, an endpoint that is not an http(s) URL, or
// half a key pair. Pure.
Options parse_s3_url(const ParsedUrl& parsed, const std::string& url);

// Looks up an environment variable; nullopt when unset.
using EnvFn = std::function<std::optional<std::string>(const std::string& name)>;
// Reads a whole file; nullopt when it does not exist.
using ReadFileFn = std::function<std::optional<std::string>(const std::string& path)>;

// Temporary credentials walship fetches, and refreshes before they expire
// (aws_credentials.h), when no keys were found: the AWS SDKs' sources after
// keys, in their order.
struct RoleSource {
  enum class Kind {
    none,          // keys: Resolved::credentials
    web_identity,  // STS AssumeRoleWithWebIdentity with a token file (EKS IRSA)
    process,       // a profile's credential_process (also SSO via export-credentials)
    container,     // ECS task role or EKS Pod Identity
    instance,      // the EC2 instance profile, through IMDSv2
  };
  Kind kind = Kind::none;
  std::string url;            // STS endpoint, container URL, or IMDS base URL
  std::string role_arn;       // web_identity
  std::string session_name;   // web_identity; empty: walship-<pid>
  std::string token_file;     // web_identity's token, container's authorization token file
  std::string authorization;  // container: the Authorization header value
  std::string command;        // process
  std::string profile;        // process: the profile it is in
};

// "the EC2 instance profile (instance metadata at ...)" and the like.
std::string describe_role(const RoleSource& role);

// Where requests go and how they are signed, once every source is consulted.
struct Resolved {
  std::string endpoint;  // "https://s3.us-east-1.amazonaws.com" or the custom one
  std::string region;
  bool path_style = false;
  std::string ca_file;       // the store's trust: the ca-file option, else $AWS_CA_BUNDLE
  std::string role_ca_file;  // the role endpoints' (STS): $AWS_CA_BUNDLE only, never the store's ca-file
  Credentials credentials;   // keys, when role.kind is none
  RoleSource role;
  std::string credentials_source;  // "the URL options", "the environment", "profile 'x' in <file>", ...
};

// Resolves the endpoint, region, addressing style and credentials.
// Credentials, first found wins: the access-key-id/secret-access-key options;
// the profile named by the profile option in the shared credentials file
// ($AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials) or config file
// ($AWS_CONFIG_FILE or ~/.aws/config); $AWS_ACCESS_KEY_ID and
// $AWS_SECRET_ACCESS_KEY (with $AWS_SESSION_TOKEN); then profile $AWS_PROFILE
// (or "default") in those files. Then temporary credentials (RoleSource):
// web identity ($AWS_WEB_IDENTITY_TOKEN_FILE and $AWS_ROLE_ARN, or the
// profile's web_identity_token_file and role_arn; STS at
// $AWS_ENDPOINT_URL_STS or the region's endpoint); the profile's
// credential_process; container credentials
// ($AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, or _FULL_URI with
// $AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN); the EC2 instance
// profile ($AWS_EC2_METADATA_SERVICE_ENDPOINT, unless
// $AWS_EC2_METADATA_DISABLED is true). Throws UsageError when no source is
// left, when a named profile does not exist, when a key pair or a web
// identity is incomplete, or for a container URL on another host than the
// container agents' (plain http there only). Pure given `env` and `read_file`.
Resolved resolve(const Options& options, const std::string& url, const EnvFn& env,
                 const ReadFileFn& read_file);

// resolve() with the process environment and the real files.
Resolved resolve(const Options& options, const std::string& url);

// The sections of an INI file as the AWS CLI reads it ("[default]",
// "[profile x]"; "key = value"; '#' and ';' comments): section -> key -> value,
// keys lower-cased. Pure.
using IniFile = std::map<std::string, std::map<std::string, std::string>>;
IniFile parse_ini(const std::string& text);

}  // namespace walship::s3
