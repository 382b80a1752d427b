// Flags registered from the option table (lib/config/option_defs.h): each
// takes its text into a slot, and once parsing is over the given ones go
// through the same setters walship.toml's keys use (config.h), so a flag and
// a key never differ in default, limits or message.
#pragma once

#include <CLI/CLI.hpp>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "lib/config/config.h"
#include "lib/config/option_defs.h"

namespace walship::cmd {

class OptionFlags {
 public:
  // Adds a flag for every option of `scope` that has one (not key-only, not
  // flag-only) to `sub`, in table order: --NAME DURATION/N with its default
  // in --help, or a plain --NAME/--no-NAME for a boolean (taking no value).
  // Returns them so callers can add `excludes`.
  std::vector<CLI::Option*> add(CLI::App& sub, unsigned scope);

  // Adds the flag of the one option `name`.
  CLI::Option* add_one(CLI::App& sub, std::string_view name);

  // The options given on the command line, in table order: name and text
  // ("true" for a boolean flag given, "false" for a --no-NAME given).
  std::vector<std::pair<std::string, std::string>> given() const;

 private:
  struct Slot {
    const OptionDef* def = nullptr;
    std::string text;
    bool on = false;  // a boolean flag
    CLI::Option* option = nullptr;
  };
  std::deque<Slot> m_slots;  // a deque: CLI11 keeps pointers to `text` and `on`
};

// The check of walship.toml's replica settings load_config() runs: the
// backends' own option tables (registry.h's check_replica_setting).
SettingCheck replica_setting_check();

}  // namespace walship::cmd
