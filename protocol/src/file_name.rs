//! File names as people see them: the one convention for every name the agent and
//! local mode show (an event's `source`, logs, the reviewer page). A Linux file name is
//! any bytes but `/` and NUL: not necessarily UTF-8 (a Latin-1 `caf\xe9.jpg` copied
//! from an old camera or a Windows share), and it may hold newlines or terminal
//! escapes. Whoever touches the file keeps the name's own bytes (an `OsStr`/`Path`,
//! never a `String`), and shows it as [`escaped`]: valid UTF-8 as it is, every other
//! byte and every control character as `\xNN` (`\n`, `\t`, `\r` by name) and `\` as
//! `\\`, so that two names never look alike and a name cannot forge a log line.
//! Escaping is reversible, unlike a lossy U+FFFD replacement. No I/O.

use std::ffi::OsStr;
use std::fmt::Write;
use std::path::Path;

/// `name` for display: see the module docs.
pub fn escaped(name: &OsStr) -> String {
    let bytes = name.as_encoded_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A whole path for display, escaped as [`escaped`] (the `/`s stay).
pub fn escaped_path(path: &Path) -> String {
    escaped(path.as_os_str())
}

/// The extension of `name` (after its last `.`, which must not be its first byte) as
/// bytes, whatever the rest of the name is made of.
pub fn extension(name: &OsStr) -> Option<&[u8]> {
    let bytes = name.as_encoded_bytes();
    let dot = bytes.iter().rposition(|&b| b == b'.')?;
    (dot > 0).then(|| &bytes[dot + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn esc(bytes: &[u8]) -> String {
        escaped(OsStr::from_bytes(bytes))
    }

    #[test]
    fn utf8_names_show_as_they_are() {
        assert_eq!(esc("café 🐕.jpg".as_bytes()), "café 🐕.jpg");
    }

    #[test]
    fn bytes_that_are_not_utf8_show_as_hex_escapes() {
        assert_eq!(esc(b"caf\xe9.jpg"), "caf\\xe9.jpg");
        assert_eq!(esc(b"\xff\xfe"), "\\xff\\xfe");
    }

    #[test]
    fn control_characters_cannot_forge_a_log_line() {
        assert_eq!(
            esc(b"a\nlevel=ERROR b\t\r\x1b[31m.jpg"),
            "a\\nlevel=ERROR b\\t\\r\\x1b[31m.jpg"
        );
        assert_eq!(esc("\u{85}".as_bytes()), "\\xc2\\x85");
    }

    #[test]
    fn a_backslash_is_doubled_so_no_two_names_look_alike() {
        assert_ne!(esc(b"caf\\xe9.jpg"), esc(b"caf\xe9.jpg"));
        assert_eq!(esc(b"caf\\xe9.jpg"), "caf\\\\xe9.jpg");
    }

    #[test]
    fn the_extension_is_found_in_any_name() {
        let ext = |b: &[u8]| extension(OsStr::from_bytes(b)).map(<[u8]>::to_vec);
        assert_eq!(ext(b"caf\xe9.JPG"), Some(b"JPG".to_vec()));
        assert_eq!(ext(b"a.b.png"), Some(b"png".to_vec()));
        assert_eq!(ext(b".jpg"), None);
        assert_eq!(ext(b"jpg"), None);
        assert_eq!(ext(b"x."), Some(b"".to_vec()));
    }
}
