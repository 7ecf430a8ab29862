//! Config settings renamed in a release. For one release the old spelling is still
//! read (a serde `alias` on the field) and [`renamed_keys`] names each use of it, so
//! the daemon logs a warning instead of refusing to start after an upgrade. Both
//! daemons' configs use it; their TOML is parsed once more here, only to find keys.

/// A setting's old and new dotted path, e.g. `mqtt.tls.ca` → `mqtt.tls.ca_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renamed {
    pub old: &'static str,
    pub new: &'static str,
}

/// One warning per renamed setting that `text` (a TOML document) still spells the old
/// way. A document that does not parse gives none: the real parse reports that.
pub fn renamed_keys(text: &str, renames: &[Renamed]) -> Vec<String> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    renames
        .iter()
        .filter(|r| lookup(&doc, r.old))
        .map(|r| {
            format!(
                "setting `{}` is deprecated: rename it to `{}` (the old name will stop working in the next release)",
                r.old, r.new
            )
        })
        .collect()
}

fn lookup(doc: &toml::Table, dotted: &str) -> bool {
    let mut table = doc;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        match (table.get(part), parts.peek()) {
            (Some(_), None) => return true,
            (Some(toml::Value::Table(t)), Some(_)) => table = t,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENAMES: [Renamed; 2] = [
        Renamed {
            old: "mqtt.tls.ca",
            new: "mqtt.tls.ca_file",
        },
        Renamed {
            old: "mqtt.max_inflight",
            new: "mqtt.max_in_flight",
        },
    ];

    #[test]
    fn each_old_spelling_in_use_gets_one_warning_naming_both() {
        let text = "[mqtt]\nmax_inflight = 4\n[mqtt.tls]\nca = \"a.pem\"\n";
        let warnings = renamed_keys(text, &RENAMES);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("`mqtt.tls.ca`") && warnings[0].contains("`mqtt.tls.ca_file`")
        );
    }

    #[test]
    fn new_spellings_other_sections_and_broken_documents_give_none() {
        let text = "[mqtt]\nmax_in_flight = 4\n[mqtt.tls]\nca_file = \"a.pem\"\n[other]\nca = 1\n";
        assert!(renamed_keys(text, &RENAMES).is_empty());
        assert!(renamed_keys("[mqtt\nmax_inflight = ", &RENAMES).is_empty());
        assert!(renamed_keys("mqtt = 3", &RENAMES).is_empty());
    }
}
