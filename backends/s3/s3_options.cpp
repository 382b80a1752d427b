#include "backends/s3/s3_options.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <sstream>

#include "backends/cloud/imds_session.h"
#include "lib/util/error.h"
#include "lib/util/fs.h"

namespace walship::s3 {

namespace {

constexpr OptionSpec k_options[] = {
    {"endpoint", OptionKind::text},
    {"region", OptionKind::text},
    {"path-style", OptionKind::boolean},
    {"ca-file", OptionKind::text},
    {"insecure-skip-verify", OptionKind::boolean},
    {"profile", OptionKind::text},
    {"access-key-id", OptionKind::text},
    {"secret-access-key", OptionKind::text},
    {"session-token", OptionKind::text},
    {"multipart-threshold", OptionKind::bytes},
    {"part-size", OptionKind::bytes},
};

constexpr std::string_view k_option_list =
    "endpoint, region, path-style, ca-file, insecure-skip-verify, profile, access-key-id, "
    "secret-access-key, session-token, multipart-threshold and part-size";

std::string trim(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return "";
  const size_t end = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(begin, end - begin + 1));
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Bucket names as S3 and its look-alikes accept them (AWS's rules are
// stricter; legacy and third-party buckets may have upper case or '_').
bool is_valid_bucket(const std::string& bucket) {
  if (bucket.size() < 3 || bucket.size() > 63) return false;
  return std::all_of(bucket.begin(), bucket.end(),
                     [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '-' || c == '_'; });
}

// "http(s)://host[:port]" with nothing after but an optional '/'.
std::string normalize_endpoint(const std::string& value, const std::string& where) {
  std::string endpoint = value;
  while (endpoint.ends_with('/')) endpoint.pop_back();
  ParsedUrl parsed;
  try {
    parsed = parse_url(endpoint);
  } catch (const UsageError&) {
    throw UsageError("invalid endpoint '" + redact_url(value) + "' " + where +
                     ": expected http://host[:port] or https://host[:port]");
  }
  if ((parsed.scheme != "http" && parsed.scheme != "https") || parsed.host.empty() || !parsed.user.empty() ||
      parsed.password || !parsed.path.empty() || !parsed.query.empty()) {
    throw UsageError("invalid endpoint '" + redact_url(value) + "' " + where +
                     ": expected http://host[:port] or https://host[:port], without a path");
  }
  return endpoint;
}

bool is_ip_or_localhost(const std::string& host) {
  if (host == "localhost" || host.find(':') != std::string::npos) return true;  // IPv6 literal
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [](unsigned char c) { return std::isdigit(c) || c == '.'; });
}

std::string home_file(const EnvFn& env, const std::string& variable, const std::string& relative) {
  if (auto path = env(variable); path && !path->empty()) return *path;
  const auto home = env("HOME");
  if (!home || home->empty()) return "";
  return *home + "/" + relative;
}

// The section of `profile` in a credentials file ("[name]") or config file
// ("[profile name]", "[default]").
const std::map<std::string, std::string>* find_profile(const IniFile& ini, const std::string& profile,
                                                       bool config_file) {
  auto it = ini.find(profile);
  if (config_file && profile != "default") it = ini.find("profile " + profile);
  return it == ini.end() ? nullptr : &it->second;
}

std::string value_of(const std::map<std::string, std::string>* section, const std::string& key) {
  if (section == nullptr) return "";
  const auto it = section->find(key);
  return it == section->end() ? "" : it->second;
}

}  // namespace

std::span<const OptionSpec> option_specs() { return k_options; }

IniFile parse_ini(const std::string& text) {
  IniFile ini;
  std::string section;
  bool in_section = false;
  std::istringstream lines(text);
  std::string raw;
  while (std::getline(lines, raw)) {
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      const size_t close = line.find(']');
      section = trim(line.substr(1, close == std::string::npos ? std::string::npos : close - 1));
      // "[profile  x]" and "[profile x]" name the same profile.
      if (section.starts_with("profile ")) section = "profile " + trim(section.substr(8));
      in_section = true;
      ini[section];
      continue;
    }
    const size_t eq = line.find('=');
    if (!in_section || eq == std::string::npos) continue;
    std::string value = trim(line.substr(eq + 1));
    // An inline comment needs whitespace before it: secrets may contain '#'.
    for (const char* marker : {" #", "\t#", " ;", "\t;"}) {
      const size_t at = value.find(marker);
      if (at != std::string::npos) value = trim(value.substr(0, at));
    }
    ini[section][lower(trim(line.substr(0, eq)))] = value;
  }
  return ini;
}

Options parse_s3_url(const ParsedUrl& parsed, const std::string& url) {
  const std::string shown = redact_url(url);
  Options options;
  options.bucket = bucket_url_bucket(parsed, shown, "s3", " and the endpoint option");
  if (!is_valid_bucket(options.bucket)) {
    throw UsageError("invalid replica URL '" + shown + "': '" + options.bucket +
                     "' is not a bucket name (3 to 63 letters, digits, '.', '-' or '_')");
  }
  options.prefix = bucket_url_prefix(parsed, shown);
  for (const auto& [name, value] : parsed.query) {
    const auto spec = std::find_if(std::begin(k_options), std::end(k_options),
                                   [&name](const OptionSpec& o) { return o.name == name; });
    if (spec == std::end(k_options)) {
      throw UsageError("unknown option '" + name + "' for replica '" + shown + "': s3:// takes " +
                       std::string(k_option_list));
    }
    check_option_value(name, value, spec->kind, shown);
    if (name == "endpoint") options.endpoint = normalize_endpoint(value, "for replica '" + shown + "'");
    if (name == "region") options.region = value;
    if (name == "path-style") options.path_style = parse_bool_option(name, value, shown);
    if (name == "ca-file") options.ca_file = value;
    if (name == "insecure-skip-verify") options.insecure_skip_verify = parse_bool_option(name, value, shown);
    if (name == "profile") options.profile = value;
    if (name == "access-key-id") options.credentials.access_key_id = value;
    if (name == "secret-access-key") options.credentials.secret_access_key = value;
    if (name == "session-token") options.credentials.session_token = value;
    if (name == "multipart-threshold") options.multipart_threshold = parse_bytes_option(name, value, shown);
    if (name == "part-size") {
      options.part_size = parse_bytes_option(name, value, shown);
      if (options.part_size < k_min_part_size || options.part_size > k_max_part_size) {
        throw UsageError("invalid option part-size='" + value + "' for replica '" + shown +
                         "': S3 parts are 5 MiB (5242880) to 5 GiB");
      }
    }
  }
  if (options.region.find_first_of("/ ") != std::string::npos) {
    throw UsageError("invalid option region='" + options.region + "' for replica '" + shown + "'");
  }
  if (options.credentials.access_key_id.empty() != options.credentials.secret_access_key.empty()) {
    throw UsageError("invalid options for replica '" + shown +
                     "': access-key-id and secret-access-key go together; give both or neither");
  }
  if (!options.credentials.session_token.empty() && options.credentials.access_key_id.empty()) {
    throw UsageError("invalid options for replica '" + shown +
                     "': session-token needs access-key-id and secret-access-key");
  }
  return options;
}

namespace {

// The hosts a container credentials URL may name over plain http: loopback
// and the ECS and EKS Pod Identity agents (as the AWS SDKs allow).
bool container_host_allowed(const std::string& url) {
  const ParsedUrl parsed = parse_url(url);
  if (parsed.scheme == "https") return true;
  return parsed.host == "169.254.170.2" || parsed.host == "169.254.170.23" || parsed.host == "fd00:ec2::23" ||
         parsed.host == "localhost" || parsed.host.starts_with("127.") || parsed.host == "::1";
}

using IniSection = std::map<std::string, std::string>;

RoleSource role_source(const std::string& shown, const std::string& profile,
                       const IniSection* credentials_section, const IniSection* config_section,
                       const std::function<std::string(const std::string&)>& env_value) {
  RoleSource role;
  auto either = [&](const char* key) {
    const std::string v = value_of(config_section, key);
    return v.empty() ? value_of(credentials_section, key) : v;
  };
  std::string token_file = env_value("AWS_WEB_IDENTITY_TOKEN_FILE");
  std::string role_arn = env_value("AWS_ROLE_ARN");
  std::string where = "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN";
  if (token_file.empty() && role_arn.empty()) {
    token_file = either("web_identity_token_file");
    role_arn = token_file.empty() ? "" : either("role_arn");
    where = "web_identity_token_file and role_arn in AWS profile '" + profile + "'";
  }
  if (!token_file.empty() || !role_arn.empty()) {
    if (token_file.empty() || role_arn.empty()) {
      throw UsageError("unable to open replica '" + shown + "': a web identity needs both " + where +
                       "; set both, or neither");
    }
    role.kind = RoleSource::Kind::web_identity;
    role.token_file = token_file;
    role.role_arn = role_arn;
    role.session_name = env_value("AWS_ROLE_SESSION_NAME");
    if (role.session_name.empty()) role.session_name = either("role_session_name");
    return role;
  }
  if (const std::string command = either("credential_process"); !command.empty()) {
    role.kind = RoleSource::Kind::process;
    role.command = command;
    role.profile = profile;
    return role;
  }
  const std::string relative = env_value("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const std::string full = env_value("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  if (!relative.empty() || !full.empty()) {
    role.kind = RoleSource::Kind::container;
    if (!relative.empty()) {
      role.url = "http://169.254.170.2" + (relative.starts_with('/') ? relative : "/" + relative);
      return role;
    }
    role.url = full;
    if (!full.starts_with("http://") && !full.starts_with("https://")) {
      throw UsageError("unable to open replica '" + shown + "': AWS_CONTAINER_CREDENTIALS_FULL_URI '" + full +
                       "' is not an http(s) URL");
    }
    if (!container_host_allowed(full)) {
      throw UsageError("unable to open replica '" + shown + "': AWS_CONTAINER_CREDENTIALS_FULL_URI '" + full +
                       "' names a host other than loopback or the ECS/EKS credential agents over plain http; "
                       "use https or one of those hosts");
    }
    role.token_file = env_value("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    if (role.token_file.empty()) role.authorization = env_value("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    return role;
  }
  std::string disabled = env_value("AWS_EC2_METADATA_DISABLED");
  std::transform(disabled.begin(), disabled.end(), disabled.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (disabled == "true") {
    throw UsageError("unable to open replica '" + shown +
                     "': no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in "
                     "~/.aws/credentials, a role (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE), or the "
                     "access-key-id and secret-access-key options (the EC2 instance metadata service is off: "
                     "AWS_EC2_METADATA_DISABLED=true)");
  }
  role.kind = RoleSource::Kind::instance;
  role.url = env_value("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  if (role.url.empty()) role.url = cloud::k_imds_default_endpoint;
  while (role.url.ends_with('/')) role.url.pop_back();
  return role;
}

}  // namespace

std::string describe_role(const RoleSource& role) {
  switch (role.kind) {
    case RoleSource::Kind::web_identity:
      return "role '" + role.role_arn + "' with the web identity token in " + role.token_file;
    case RoleSource::Kind::process: return "the credential_process of AWS profile '" + role.profile + "'";
    case RoleSource::Kind::container: return "the container credentials at " + role.url;
    case RoleSource::Kind::instance:
      return "the EC2 instance profile (instance metadata at " + role.url + ")";
    case RoleSource::Kind::none: break;
  }
  return "";
}

Resolved resolve(const Options& options, const std::string& url, const EnvFn& env,
                 const ReadFileFn& read_file) {
  const std::string shown = redact_url(url);
  auto env_value = [&](const std::string& name) { return env(name).value_or(""); };
  Resolved out;

  const std::string credentials_path = home_file(env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
  const std::string config_path = home_file(env, "AWS_CONFIG_FILE", ".aws/config");
  const IniFile credentials_ini =
      credentials_path.empty() ? IniFile{} : parse_ini(read_file(credentials_path).value_or(""));
  const IniFile config_ini = config_path.empty() ? IniFile{} : parse_ini(read_file(config_path).value_or(""));

  const bool explicit_profile = !options.profile.empty() || !env_value("AWS_PROFILE").empty();
  const std::string profile =
      !options.profile.empty() ? options.profile
                               : (!env_value("AWS_PROFILE").empty() ? env_value("AWS_PROFILE") : "default");
  const auto* credentials_section = find_profile(credentials_ini, profile, false);
  const auto* config_section = find_profile(config_ini, profile, true);
  if (explicit_profile && credentials_section == nullptr && config_section == nullptr) {
    throw UsageError("unable to open replica '" + shown + "': AWS profile '" + profile + "' is in neither " +
                     (credentials_path.empty() ? "~/.aws/credentials" : credentials_path) + " nor " +
                     (config_path.empty() ? "~/.aws/config" : config_path));
  }

  // Keys from a profile: the credentials file first, then the config file.
  auto profile_keys = [&]() -> std::optional<Credentials> {
    for (const auto& [section, path] :
         {std::pair{credentials_section, credentials_path}, std::pair{config_section, config_path}}) {
      Credentials c{value_of(section, "aws_access_key_id"), value_of(section, "aws_secret_access_key"),
                    value_of(section, "aws_session_token")};
      if (c.access_key_id.empty() && c.secret_access_key.empty()) continue;
      if (c.access_key_id.empty() || c.secret_access_key.empty()) {
        throw UsageError("unable to open replica '" + shown + "': AWS profile '" + profile + "' in " + path +
                         " has only half a key pair; it needs aws_access_key_id and aws_secret_access_key");
      }
      out.credentials_source = "profile '" + profile + "' in " + path;
      return c;
    }
    return std::nullopt;
  };

  if (!options.credentials.access_key_id.empty()) {
    out.credentials = options.credentials;
    out.credentials_source = "the replica's options";
  } else if (auto keys = !options.profile.empty() ? profile_keys() : std::nullopt) {
    out.credentials = *keys;
  } else if (!env_value("AWS_ACCESS_KEY_ID").empty() || !env_value("AWS_SECRET_ACCESS_KEY").empty()) {
    out.credentials = {env_value("AWS_ACCESS_KEY_ID"), env_value("AWS_SECRET_ACCESS_KEY"),
                       env_value("AWS_SESSION_TOKEN")};
    if (out.credentials.access_key_id.empty() || out.credentials.secret_access_key.empty()) {
      throw UsageError("unable to open replica '" + shown +
                       "': set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither");
    }
    out.credentials_source = "the environment";
  } else if (auto file_keys = profile_keys()) {
    out.credentials = *file_keys;
  } else {
    out.role = role_source(shown, profile, credentials_section, config_section, env_value);
    out.credentials_source = describe_role(out.role);
  }

  out.region = options.region;
  if (out.region.empty()) out.region = env_value("AWS_REGION");
  if (out.region.empty()) out.region = env_value("AWS_DEFAULT_REGION");
  if (out.region.empty()) out.region = value_of(config_section, "region");
  if (out.region.empty()) out.region = "us-east-1";
  if (out.role.kind == RoleSource::Kind::web_identity) {
    out.role.url = env_value("AWS_ENDPOINT_URL_STS").empty()
                       ? "https://sts." + out.region + ".amazonaws.com"
                       : normalize_endpoint(env_value("AWS_ENDPOINT_URL_STS"), "in AWS_ENDPOINT_URL_STS");
  }

  out.endpoint = options.endpoint;
  if (out.endpoint.empty() && !env_value("AWS_ENDPOINT_URL_S3").empty()) {
    out.endpoint = normalize_endpoint(env_value("AWS_ENDPOINT_URL_S3"), "in AWS_ENDPOINT_URL_S3");
  }
  if (out.endpoint.empty() && !env_value("AWS_ENDPOINT_URL").empty()) {
    out.endpoint = normalize_endpoint(env_value("AWS_ENDPOINT_URL"), "in AWS_ENDPOINT_URL");
  }
  const bool custom = !out.endpoint.empty();
  if (!custom) out.endpoint = "https://s3." + out.region + ".amazonaws.com";
  if (options.path_style) {
    out.path_style = *options.path_style;
  } else {
    // Custom stores all take path-style requests, and many (MinIO, an IP
    // address) take nothing else; a dotted bucket breaks the TLS wildcard of
    // a virtual host, and upper case or '_' (legacy buckets) is no host name.
    out.path_style =
        custom || !std::all_of(options.bucket.begin(), options.bucket.end(), [](unsigned char c) {
          return std::islower(c) || std::isdigit(c) || c == '-';
        });
  }
  if (!out.path_style && is_ip_or_localhost(parse_url(out.endpoint).host)) {
    throw UsageError(
        "invalid options for replica '" + shown +
        "': path-style=false needs an endpoint with a host name, not an IP address or localhost");
  }
  out.role_ca_file = env_value("AWS_CA_BUNDLE");
  out.ca_file = !options.ca_file.empty() ? options.ca_file : out.role_ca_file;
  return out;
}

Resolved resolve(const Options& options, const std::string& url) {
  const EnvFn env = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  return resolve(options, url, env, read_small_file);
}

}  // namespace walship::s3
