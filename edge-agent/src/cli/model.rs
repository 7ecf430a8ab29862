//! `edge-agent model ...`: signed model packages for fleet admins (`keygen`, `sign`,
//! `verify`) and the device's installed models for its owner (`status`, `rollback`).
//! Keys and signatures are minisign's: `minisign -Vm PKG.tar -p KEY.pub` checks a
//! package without this tool. A secret key is written 0600, refused when others can
//! read it, and never printed or logged.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use protocol::package::{self, PackageManifest, TrustedKey, PACKAGE_FORMAT};

use crate::config::AgentConfig;
use crate::model::ModelPackage;
use crate::update::store::ModelStore;
use crate::update::worker::signature_path;

/// The environment variable holding the password of a password-protected secret key
/// (one made by `minisign -G`); keys from `model keygen` have none.
pub const KEY_PASSWORD_ENV: &str = "EDGE_A2I_KEY_PASSWORD";

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Make a signing key pair: PREFIX.key (secret, 0600) and PREFIX.pub (for the
    /// agents' update.trusted_keys).
    Keygen {
        /// Path prefix of the two files, e.g. /etc/edge-a2i/fleet.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Pack a model (its manifest and the files it names) into a signed package:
    /// OUT/NAME-VERSION.tar and its .minisig.
    Sign {
        /// The model manifest (e.g. `retrain`'s output).
        #[arg(long, value_name = "MANIFEST")]
        model: PathBuf,
        /// The secret key file.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Where the package goes.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Devices refuse the package before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        not_before: Option<String>,
        /// Devices refuse the package from this time on (RFC 3339).
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
        /// Make a rollback package: it undoes VERSION (the highest a device has) and
        /// is accepted although older.
        #[arg(long, value_name = "VERSION")]
        rollback_of: Option<String>,
    },
    /// Check a package's signature and contents; print what it holds.
    Verify {
        /// The package (.tar); its signature is PACKAGE.minisig unless --signature.
        package: PathBuf,
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// Public key file(s) to trust (default: the config's update.trusted_keys).
        #[arg(long = "key", value_name = "PUB")]
        keys: Vec<PathBuf>,
        /// The agent's config, for its trusted keys.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// The installed model packages and the update under way, if any.
    Status {
        #[arg(long, short, default_value = "/etc/edge-agent/config.toml")]
        config: PathBuf,
    },
    /// Serve the previous package again (or the configured model), whether the agent
    /// runs (it switches between two frames) or not.
    Rollback {
        #[arg(long, short, default_value = "/etc/edge-agent/config.toml")]
        config: PathBuf,
    },
}

pub fn run(args: ModelArgs) -> anyhow::Result<i32> {
    match args.command {
        ModelCommand::Keygen { out } => keygen(&out),
        ModelCommand::Sign {
            model,
            key,
            out,
            not_before,
            expires,
            rollback_of,
        } => sign(&model, &key, &out, not_before, expires, rollback_of),
        ModelCommand::Verify {
            package,
            signature,
            keys,
            config,
        } => verify(&package, signature, keys, config),
        ModelCommand::Status { config } => status(&config),
        ModelCommand::Rollback { config } => rollback(&config),
    }
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

fn keygen(prefix: &Path) -> anyhow::Result<i32> {
    let (sec, publ) = (with_ext(prefix, ".key"), with_ext(prefix, ".pub"));
    let pair = package::generate_keypair("edge-a2i model signing key")?;
    // create_new: never overwrite a key (a lost secret key cannot sign updates the
    // fleet will take).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&sec)
        .with_context(|| format!("cannot create {}", sec.display()))?;
    f.write_all(pair.secret.as_bytes())?;
    f.sync_all()?;
    std::fs::write(&publ, &pair.public)
        .with_context(|| format!("cannot write {}", publ.display()))?;
    println!("key id:     {}", pair.key_id);
    println!(
        "secret key: {} (0600; keep it off the devices)",
        sec.display()
    );
    println!(
        "public key: {} (list it in the agents' update.trusted_keys)",
        publ.display()
    );
    Ok(0)
}

fn read_secret_key(path: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "secret key {} can be read by others (mode {mode:o}): chmod 600 it first",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn sign(
    model: &Path,
    key: &Path,
    out: &Path,
    not_before: Option<String>,
    expires: Option<String>,
    rollback_of: Option<String>,
) -> anyhow::Result<i32> {
    let secret = read_secret_key(key)?;
    // Loading checks the model file against the manifest (sha256, TFLite header),
    // the labels and the self-test input before anything is signed.
    let loaded = ModelPackage::load(model)?;
    let dir = model.parent().unwrap_or(Path::new("."));
    let m = &loaded.manifest;
    let mut names = vec![
        file_name(model)?,
        m.model.file.clone(),
        m.model.labels.clone(),
    ];
    if let Some(t) = &m.self_test {
        names.push(t.input.clone());
    }
    let mut files = Vec::new();
    for name in &names {
        if Path::new(name).components().count() != 1 {
            bail!("{name}: a packaged model's files must sit beside its manifest (no directories)");
        }
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))?;
        files.push((name.clone(), bytes));
    }
    let manifest = PackageManifest {
        format: PACKAGE_FORMAT,
        name: m.model.name.clone(),
        version: m.model.version.clone(),
        parent_version: m.lineage.as_ref().map(|l| l.parent_version.clone()),
        created: protocol::timestamp::format_rfc3339_utc(protocol::timestamp::now_ms() as i64),
        not_before,
        expires,
        rollback_of,
        model_manifest: names[0].clone(),
        files: Vec::new(),
    };
    let comment = manifest.trusted_comment();
    let tar = package::build(manifest, &files)?;
    let password = std::env::var(KEY_PASSWORD_ENV).ok();
    let signature = package::sign(&secret, password, &tar, &comment)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(format!("{}-{}.tar", m.model.name, m.model.version));
    std::fs::write(&path, &tar).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::write(signature_path(&path), signature)?;
    println!(
        "package:   {} ({} bytes, sha256 {})",
        path.display(),
        tar.len(),
        protocol::sha256_hex(&tar)
    );
    println!("signature: {}", signature_path(&path).display());
    Ok(0)
}

fn file_name(p: &Path) -> anyhow::Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .with_context(|| format!("{} has no file name", p.display()))
}

fn verify(
    package_path: &Path,
    signature: Option<PathBuf>,
    keys: Vec<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let key_files = if keys.is_empty() {
        let Some(config) = config else {
            bail!("name the trusted public key(s) with --key PUB, or the agent's config with --config");
        };
        AgentConfig::load(&config)?.update.trusted_keys
    } else {
        keys
    };
    let trusted = key_files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            TrustedKey::parse(&text).with_context(|| format!("{}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sig_path = signature.unwrap_or_else(|| signature_path(package_path));
    let bytes = std::fs::read(package_path)
        .with_context(|| format!("cannot read {}", package_path.display()))?;
    let sig = std::fs::read_to_string(&sig_path)
        .with_context(|| format!("cannot read {}", sig_path.display()))?;
    let key = package::verify(&bytes, &sig, &trusted)?;
    let contents = package::parse(&bytes, u64::MAX)?;
    let m = &contents.manifest;
    println!("signature: good, key {}", key.key_id);
    println!(
        "package:   {} {} ({} bytes, sha256 {})",
        m.name,
        m.version,
        bytes.len(),
        protocol::sha256_hex(&bytes)
    );
    if let Some(p) = &m.parent_version {
        println!("parent:    {p}");
    }
    if let Some(r) = &m.rollback_of {
        println!("rollback of {r}");
    }
    println!("created:   {}", m.created);
    for (label, v) in [("not before", &m.not_before), ("expires", &m.expires)] {
        if let Some(v) = v {
            println!("{label}: {v}");
        }
    }
    for f in &m.files {
        println!("  {:<32} {:>10} bytes  {}", f.path, f.size, f.sha256);
    }
    m.check_validity(protocol::timestamp::now_ms() as i64)?;
    Ok(0)
}

fn status(config: &Path) -> anyhow::Result<i32> {
    let config = AgentConfig::load(config)?;
    let store = ModelStore::open(&config.device.state_dir)?;
    let state = store.state()?;
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "the configured model".into());
    println!("serving:  {}", show(&state.current));
    println!("previous: {}", show(&state.previous));
    println!(
        "highest:  {}",
        state.highest.as_deref().unwrap_or("none installed")
    );
    match store.update()? {
        Some(u) => println!(
            "update:   {} at the {} step{}",
            u.version,
            u.step,
            u.job_id.map(|j| format!(" (job {j})")).unwrap_or_default()
        ),
        None => println!("update:   none under way"),
    }
    Ok(0)
}

fn rollback(config_path: &Path) -> anyhow::Result<i32> {
    let config = AgentConfig::load(config_path)?;
    let store = ModelStore::open(&config.device.state_dir)?;
    let before = store.state()?;
    let Some(current) = before.current.clone() else {
        bail!("no installed package serves (the configured model does): nothing to roll back");
    };
    let target = before
        .previous
        .clone()
        .unwrap_or_else(|| "the configured model".into());
    match crate::outbox::try_lock(&config.outbox_path())? {
        Some(_held) => {
            // The agent is stopped: its next start serves the previous package.
            let mut state = before;
            state.current = state.previous.take();
            store.set_state(&state)?;
            println!("rolled back from {current} to {target} (served from the agent's next start)");
        }
        None => {
            let request = config.updates_dir().join("rollback.request");
            std::fs::write(&request, b"")
                .with_context(|| format!("cannot write {}", request.display()))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if store.state()?.current != Some(current.clone()) {
                    println!(
                        "rolled back from {current} to {target}; the running agent serves it now"
                    );
                    return Ok(0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::fs::remove_file(&request);
            bail!("the running agent did not roll back within 30 s: see its log");
        }
    }
    Ok(0)
}
