// replicate's arguments: the --exec command line and the replica URL of a
// directory's database.
#include <cctype>

#include "lib/replica/replicate.h"
#include "lib/util/error.h"
#include "lib/util/percent_encode.h"

namespace walship {

std::vector<std::string> split_command(const std::string& command) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < command.size(); ++i) {
    const char c = command[i];
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < command.size()) {
        word += command[++i];
      } else {
        word += c;
      }
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < command.size()) {
      word += command[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (quote)
    throw UsageError("invalid --exec command '" + command + "': unterminated " + std::string(1, quote) +
                     " quote");
  if (in_word) words.push_back(std::move(word));
  if (words.empty())
    throw UsageError("invalid --exec command: it is empty; give the app to run, e.g. --exec \"myapp serve\"");
  return words;
}

std::string join_replica_url(const std::string& prefix_url, const std::string& file_name) {
  if (prefix_url.starts_with('/'))
    return (prefix_url.ends_with('/') ? prefix_url : prefix_url + "/") + file_name;
  const size_t query = prefix_url.find('?');
  std::string base = prefix_url.substr(0, query);
  const std::string rest = query == std::string::npos ? "" : prefix_url.substr(query);
  if (!base.ends_with('/')) base += '/';
  return base + percent_encode(file_name) + rest;
}

}  // namespace walship
