#include "cmd/option_flags.h"

#include "backends/registry.h"
#include "lib/util/error.h"

namespace walship::cmd {

std::vector<CLI::Option*> OptionFlags::add(CLI::App& sub, unsigned scope) {
  std::vector<CLI::Option*> added;
  for (const OptionDef& def : option_defs()) {
    if ((def.scope & scope) == 0 ||
        (def.scope & (k_scope_key_only | k_scope_flag_only | k_scope_process)) != 0)
      continue;
    added.push_back(add_one(sub, def.name));
  }
  return added;
}

CLI::Option* OptionFlags::add_one(CLI::App& sub, std::string_view name) {
  Slot& slot = m_slots.emplace_back();
  slot.def = &option(name);
  const OptionDef& def = *slot.def;
  std::string help(def.help);
  if (def.unit == OptionUnit::boolean) {
    // No "=value" form: CLI11 would read yes/1/on as true there.
    slot.option = sub.add_flag(option_flag(def), slot.on, help)->disable_flag_override();
    return slot.option;
  }
  if (def.unit == OptionUnit::count && def.max < k_max_count) {
    help += " (" + std::to_string(def.min) + " to " + std::to_string(def.max) + ")";
  }
  std::string type = def.unit == OptionUnit::duration ? "DURATION"
                     : def.unit == OptionUnit::text   ? "CMD"
                     : def.unit == OptionUnit::path   ? "PATH"
                                                      : "N";
  if (def.unit == OptionUnit::choice) {
    type.clear();
    for (std::string_view choice : option_choices(def))
      type += (type.empty() ? "" : "|") + std::string(choice);
  }
  slot.option =
      sub.add_option(option_flag(def), slot.text, help)->type_name(type)->default_str(render_default(def));
  // Checked while parsing, so a bad value is a usage error with the hint to
  // --help; a ParseError that is no ValidationError keeps CLI11 from
  // prefixing the message, which stays the one walship.toml's key gets.
  slot.option->check(
      [&def](const std::string& text) -> std::string {
        try {
          parse_option_value(def, text, option_flag(def));
        } catch (const UsageError& e) {
          throw CLI::ParseError(e.what(), CLI::ExitCodes::ValidationError);
        }
        return "";
      },
      "");
  return slot.option;
}

std::vector<std::pair<std::string, std::string>> OptionFlags::given() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Slot& slot : m_slots) {
    if (slot.option->count() == 0) continue;
    std::string text = slot.text;
    if (slot.def->unit == OptionUnit::boolean) text = slot.def->default_value == 0 ? "true" : "false";
    out.emplace_back(std::string(slot.def->name), std::move(text));
  }
  return out;
}

SettingCheck replica_setting_check() {
  return [](const std::string& url, const std::string& name, SettingKind kind, const std::string& value) {
    const SettingType type = kind == SettingKind::integer   ? SettingType::integer
                             : kind == SettingKind::boolean ? SettingType::boolean
                                                            : SettingType::string;
    check_replica_setting(url, name, type, value);
  };
}

}  // namespace walship::cmd
