//! The secrets `local-aws run` keeps in its state directory besides
//! [`crate::credentials`]: the fleet signing key pair and the reviewer page's token, and
//! how they are written (0600) and handed to the in-process relay.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Layout;
use crate::credentials::Credentials;
use crate::review_page;

/// The relay signs its requests to the local services with local mode's key pair:
/// its AWS clients take credentials from the environment, so they are set here,
/// before any other task runs (a real AWS profile must not leak in).
pub(super) fn use_local_credentials(credentials: &Credentials) {
    for (name, value) in credentials.env() {
        std::env::set_var(name, value);
    }
    for v in ["AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"] {
        std::env::remove_var(v);
    }
}

/// Writes `text` to `path`, readable by this user only (0600).
pub(super) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Local mode's fleet signing key pair, made at the first start: `<state>/fleet.key`
/// (0600) and `<state>/fleet.pub`, which the agent trusts. Returns the public key's path.
pub(super) fn fleet_key(layout: &Layout) -> anyhow::Result<PathBuf> {
    let (secret, public) = (layout.root.join("fleet.key"), layout.root.join("fleet.pub"));
    if secret.exists() && public.exists() {
        return Ok(public);
    }
    let pair = protocol::package::generate_keypair("edge-a2i local mode fleet key")?;
    write_private(&secret, &pair.secret)?;
    std::fs::write(&public, pair.public)
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(public)
}

/// The reviewer page's token, kept so the page's URL (and cookie) survive restarts.
pub(super) fn page_token(layout: &Layout) -> anyhow::Result<String> {
    let path = layout.root.join("review-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if review_page::auth::validate_token(&t).is_ok() {
            return Ok(t);
        }
    }
    let token = review_page::generate_token();
    write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}
