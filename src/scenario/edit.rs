//! Scenario text through `toml_edit`, which keeps the user's comments and layout: setting a
//! top-level key (`run --seed`, `--device`), building a scenario from flags, and finding the
//! line of a key for error messages.

use toml_edit::{DocumentMut, ImDocument, Item, TableLike};

/// `text` with its top-level `key` set to `value` (added when missing); keys inside tables are
/// left alone. Text that does not parse is returned unchanged (the scenario was parsed first).
pub fn with_top_key(text: &str, key: &str, value: impl Into<toml_edit::Value>) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return text.to_string();
    };
    doc[key] = Item::Value(value.into());
    doc.to_string()
}

/// The 1-based line of `key` in the table `section` (dotted, such as `federated.faults`; empty
/// for the top level), if the text has it.
pub fn locate(text: &str, section: &str, key: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let mut table: &dyn TableLike = doc.as_table();
    for part in section.split('.').filter(|p| !p.is_empty()) {
        table = table.get(part)?.as_table_like()?;
    }
    let (k, item) = table.get_key_value(key)?;
    let at = k.span().or_else(|| item.span())?.start;
    Some(text[..at.min(text.len())].matches('\n').count() + 1)
}
