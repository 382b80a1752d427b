#include "backends/s3/s3_xml.h"

#include <charconv>
#include <cstring>
#include <pugixml.hpp>

#include "lib/util/error.h"

namespace walship::s3 {

namespace {

// The local part of an element name: "ns:Key" -> "Key".
const char* local_name(const pugi::xml_node& node) {
  const char* name = node.name();
  const char* colon = std::strrchr(name, ':');
  return colon != nullptr ? colon + 1 : name;
}

pugi::xml_node child(const pugi::xml_node& node, const char* name) {
  for (pugi::xml_node c = node.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element && std::strcmp(local_name(c), name) == 0) return c;
  }
  return {};
}

std::string text_of(const pugi::xml_node& node, const char* name) {
  return child(node, name).text().as_string();
}

pugi::xml_node root_of(pugi::xml_document& doc, const std::string& xml) {
  const pugi::xml_parse_result result = doc.load_buffer(xml.data(), xml.size(), pugi::parse_default);
  if (!result) return {};
  return doc.document_element();
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

ListPage parse_list_page(const std::string& xml) {
  pugi::xml_document doc;
  const pugi::xml_node root = root_of(doc, xml);
  if (!root || std::strcmp(local_name(root), "ListBucketResult") != 0) {
    throw Failure("the listing is not a ListBucketResult");
  }
  ListPage page;
  for (pugi::xml_node c = root.first_child(); c; c = c.next_sibling()) {
    if (c.type() != pugi::node_element || std::strcmp(local_name(c), "Contents") != 0) continue;
    ListPage::Entry entry;
    entry.key = text_of(c, "Key");
    const std::string size = text_of(c, "Size");
    const auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), entry.size);
    if (entry.key.empty() || ec != std::errc() || end != size.data() + size.size()) {
      throw Failure("the listing has an entry without a key or a size");
    }
    page.entries.push_back(std::move(entry));
  }
  page.truncated = text_of(root, "IsTruncated") == "true";
  page.next_continuation_token = text_of(root, "NextContinuationToken");
  return page;
}

std::optional<ErrorInfo> parse_error(const std::string& xml) {
  pugi::xml_document doc;
  const pugi::xml_node root = root_of(doc, xml);
  if (!root || std::strcmp(local_name(root), "Error") != 0) return std::nullopt;
  ErrorInfo info{text_of(root, "Code"), text_of(root, "Message"), text_of(root, "Region")};
  if (info.code.empty()) return std::nullopt;
  return info;
}

StsCredentials parse_sts_credentials(const std::string& xml) {
  pugi::xml_document doc;
  const pugi::xml_node root = root_of(doc, xml);
  const pugi::xml_node credentials = child(child(root, "AssumeRoleWithWebIdentityResult"), "Credentials");
  StsCredentials out{text_of(credentials, "AccessKeyId"), text_of(credentials, "SecretAccessKey"),
                     text_of(credentials, "SessionToken"), text_of(credentials, "Expiration")};
  if (out.access_key_id.empty() || out.secret_access_key.empty() || out.session_token.empty()) {
    throw Failure("the answer to AssumeRoleWithWebIdentity has no credentials");
  }
  return out;
}

std::optional<ErrorInfo> parse_sts_error(const std::string& xml) {
  pugi::xml_document doc;
  const pugi::xml_node root = root_of(doc, xml);
  if (!root || std::strcmp(local_name(root), "ErrorResponse") != 0) return std::nullopt;
  const pugi::xml_node error = child(root, "Error");
  ErrorInfo info{text_of(error, "Code"), text_of(error, "Message"), ""};
  if (info.code.empty()) return std::nullopt;
  return info;
}

std::string parse_upload_id(const std::string& xml) {
  pugi::xml_document doc;
  const pugi::xml_node root = root_of(doc, xml);
  const std::string id = root ? text_of(root, "UploadId") : "";
  if (id.empty()) throw Failure("the answer to CreateMultipartUpload has no UploadId");
  return id;
}

std::vector<DeleteFailure> parse_delete_result(const std::string& xml) {
  pugi::xml_document doc;
  const pugi::xml_node root = root_of(doc, xml);
  if (!root || std::strcmp(local_name(root), "DeleteResult") != 0) {
    throw Failure("the answer to DeleteObjects is not a DeleteResult");
  }
  std::vector<DeleteFailure> failures;
  for (pugi::xml_node c = root.first_child(); c; c = c.next_sibling()) {
    if (c.type() != pugi::node_element || std::strcmp(local_name(c), "Error") != 0) continue;
    failures.push_back({text_of(c, "Key"), text_of(c, "Code"), text_of(c, "Message")});
  }
  return failures;
}

std::string delete_request_body(const std::vector<std::string>& keys) {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete><Quiet>true</Quiet>";
  for (const std::string& key : keys) out += "<Object><Key>" + escape(key) + "</Key></Object>";
  out += "</Delete>";
  return out;
}

std::string complete_multipart_body(const std::vector<std::pair<int, std::string>>& parts) {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload>";
  for (const auto& [number, etag] : parts) {
    out += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" + escape(etag) +
           "</ETag></Part>";
  }
  out += "</CompleteMultipartUpload>";
  return out;
}

}  // namespace walship::s3
