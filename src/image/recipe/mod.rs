//! Recipes (`images/*.toml`): beam's image builder.
//!
//! ```toml
//! name = "beam.local/python:3"            # optional: tag the result (BuildOptions::tag wins)
//! base = "recipe:debian"                  # busybox | debootstrap:<suite> | recipe:<file stem> | <image ref>
//! env = { PYTHONUNBUFFERED = "1" }
//! workdir = "/app"
//! commands = ["apt-get update && apt-get install -y python3"]
//! python_packages = ["notebook"]
//! entrypoint = ["python3"]                # optional; resets the base's cmd unless cmd is given too
//! cmd = ["-m", "http.server"]
//! expose = [8000]                         # → ExposedPorts (8000/tcp)
//! ```
//!
//! Steps, in this order: the base; env + workdir (config only, so commands see them, like ENV/WORKDIR
//! before RUN); each command (`/bin/sh -c` in a container on the previous step, host network, stdin
//! /dev/null, committed as a layer); python_packages (one step, `python3 -m pip install --no-cache-dir
//! --break-system-packages …` — system-wide into /usr/local, so `python3` and the packages' scripts are on
//! the default PATH with no venv to activate; PEP 668's guard is pointless in a single-purpose image);
//! then entrypoint/cmd/expose (config only). Unknown keys are an error naming the key.
//!
//! Caching: every step is keyed by sha256(parent image id, step kind, step content) and its result is
//! recorded in the store as `beam.local/cache:<key>`; a step whose key resolves to an image with all its
//! layers present is not run again. Base `busybox` is keyed by the host binary's digest, `debootstrap` by
//! suite and mirror. Bases built from images/*.toml (`recipe:debian`) are built (or found cached) first.
//!
//! Build steps share the host's network namespace (and its /etc/resolv.conf and /etc/hosts) and, for
//! hosts whose egress inspects TLS, see the host's CA bundle at `/dev/.beam-host-ca.crt` named by
//! SSL_CERT_FILE, PIP_CERT, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO and NODE_EXTRA_CA_CERTS —
//! in the step's environment only, never in the image config or its layers.
//!
//! Commit: the step container's overlay upper dir becomes a zstd tar layer (whiteouts → `.wh.` entries,
//! opaque dirs → `.wh..wh..opq`), the parent config gains the diff id and a history entry.

mod base;
pub mod layer;

use crate::image::bundle::{self, BundleError, Overrides};
use crate::image::digest::Digest;
use crate::image::store::{ImageRecord, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use base::host_mirror;

/// images/busybox.toml, embedded: the default image, built in seconds from the host's busybox-static.
pub const BUSYBOX_RECIPE: &str = include_str!("../../../images/busybox.toml");
/// Host CA bundles (Debian/Ubuntu, Fedora/RHEL, Alpine/Arch), first found is lent to build steps.
const HOST_CA_BUNDLES: [&str; 3] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];
/// Where a build step sees the host's CA bundle.
const STEP_CA: &str = "/dev/.beam-host-ca.crt";
/// The variables that point TLS clients (OpenSSL, pip, requests, curl, git, node) at a CA bundle.
const CA_VARS: [&str; 6] =
    ["SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"];
/// The repository under which step results are cached (`beam.local/cache:<key>`).
pub const CACHE_REPO: &str = "beam.local/cache";

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe {path}: {msg}")]
    Parse { path: String, msg: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("base {base:?}: {msg}")]
    Base { base: String, msg: String },
    #[error("build step `{command}` exited with code {code}{log}")]
    StepFailed { command: String, code: i32, log: String },
    #[error("build step `{command}`: {msg}")]
    Run { command: String, msg: String },
    #[error("{context}: {msg}")]
    Io { context: String, msg: String },
}

/// A parsed recipe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: Option<String>,
    pub base: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub python_packages: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub expose: Vec<Port>,
}

/// `8888` or `"8888/tcp"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Port {
    Number(u16),
    Text(String),
}

impl Port {
    fn canonical(&self) -> String {
        match self {
            Port::Number(n) => format!("{n}/tcp"),
            Port::Text(t) if t.contains('/') => t.clone(),
            Port::Text(t) => format!("{t}/tcp"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Tag the result (instead of the recipe's `name`).
    pub tag: Option<String>,
    /// No progress lines; step output goes to a log shown only when a step fails.
    pub quiet: bool,
}

impl Recipe {
    /// Parse TOML; `origin` names the recipe in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RecipeError> {
        let perr = |msg: String| RecipeError::Parse { path: origin.into(), msg };
        let r: Recipe = toml::from_str(text).map_err(|e| perr(e.message().to_string()))?;
        if r.base.trim().is_empty() {
            return Err(perr(
                "`base` is empty: busybox, debootstrap:<suite>, recipe:<name> or an image reference".into(),
            ));
        }
        if let Some(c) = r.commands.iter().find(|c| c.trim().is_empty()) {
            return Err(perr(format!("empty command {c:?} in `commands`")));
        }
        if let Some(p) = r.python_packages.iter().find(|p| p.trim().is_empty() || p.starts_with('-')) {
            return Err(perr(format!("python_packages: {p:?} is not a package requirement")));
        }
        if let Some(k) = r.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return Err(perr(format!("env: invalid variable name {k:?}")));
        }
        if let Some(w) = r.workdir.as_ref().filter(|w| !w.starts_with('/')) {
            return Err(perr(format!("workdir {w:?} must be an absolute path")));
        }
        Ok(r)
    }
}

/// Build the recipe at `recipe_path`; `recipe:<name>` bases are looked up next to it.
pub fn build(store: &Store, recipe_path: &Path, opts: &BuildOptions) -> Result<ImageRecord, RecipeError> {
    clean_stale_work(store);
    Builder { store, opts, stack: Vec::new() }.build_file(recipe_path, opts.tag.as_deref())
}

/// Build a recipe given as text (e.g. [`BUSYBOX_RECIPE`]); `recipe_dir` resolves `recipe:` bases.
pub fn build_str(
    store: &Store,
    text: &str,
    recipe_dir: Option<&Path>,
    opts: &BuildOptions,
) -> Result<ImageRecord, RecipeError> {
    let recipe = Recipe::parse(text, "(inline)")?;
    clean_stale_work(store);
    Builder { store, opts, stack: Vec::new() }.build_recipe(&recipe, recipe_dir, opts.tag.as_deref())
}

/// The cache key of a step.
pub fn step_key(parent: Option<&Digest>, kind: &str, content: &str) -> String {
    let text = format!("{}\n{kind}\n{content}", parent.map_or(String::new(), Digest::to_string));
    Digest::of(text.as_bytes()).hex().to_string()
}

struct Builder<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    /// Recipe files being built (cycle detection for `recipe:` bases).
    stack: Vec<PathBuf>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and moment (container ids, work dirs).
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{}-{nanos:08x}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst))
}

/// Remove what killed builds left in `<store>/build` (names carry the builder's pid; only entries of
/// processes that no longer exist are touched): unmount, unpin, delete.
fn clean_stale_work(store: &Store) {
    let dir = store.root().join("build");
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split(['-', '.']).nth(1).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            base::unmount_under(&path);
            if let Ok(canon) = std::fs::canonicalize(&path) {
                let _ = store.unpin(&bundle::pin_owner(&canon));
            }
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// One step of a build.
enum Step {
    Config { what: String, edit: Value },
    Run { kind: &'static str, script: String, shown: String },
}

impl Builder<'_> {
    fn say(&self, msg: impl std::fmt::Display) {
        if !self.opts.quiet {
            eprintln!("beam build: {msg}");
        }
    }

    fn build_file(&mut self, path: &Path, tag: Option<&str>) -> Result<ImageRecord, RecipeError> {
        let perr = |msg: String| RecipeError::Parse { path: path.display().to_string(), msg };
        let canon = std::fs::canonicalize(path).map_err(|e| perr(e.to_string()))?;
        if self.stack.contains(&canon) {
            return Err(perr("recipe bases form a cycle".into()));
        }
        let text = std::fs::read_to_string(&canon).map_err(|e| perr(e.to_string()))?;
        let recipe = Recipe::parse(&text, &path.display().to_string())?;
        self.stack.push(canon.clone());
        let r = self.build_recipe(&recipe, canon.parent(), tag);
        self.stack.pop();
        r
    }

    fn build_recipe(&mut self, r: &Recipe, dir: Option<&Path>, tag: Option<&str>) -> Result<ImageRecord, RecipeError> {
        let start = Instant::now();
        let mut steps = Vec::new();
        if !r.env.is_empty() || r.workdir.is_some() {
            let env: Vec<String> = r.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let what = [
                (!env.is_empty()).then(|| format!("ENV {}", env.join(" "))),
                r.workdir.as_ref().map(|w| format!("WORKDIR {w}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            steps.push(Step::Config { what, edit: json!({"env": env, "workdir": r.workdir}) });
        }
        for c in &r.commands {
            steps.push(Step::Run { kind: "run", script: c.clone(), shown: format!("RUN {c}") });
        }
        if !r.python_packages.is_empty() {
            let pkgs: Vec<String> = r.python_packages.iter().map(|p| shell_quote(p)).collect();
            let script = format!("python3 -m pip install --no-cache-dir --break-system-packages {}", pkgs.join(" "));
            steps.push(Step::Run { kind: "pip", shown: format!("PIP {}", r.python_packages.join(" ")), script });
        }
        if r.entrypoint.is_some() || r.cmd.is_some() || !r.expose.is_empty() {
            let ports: Vec<String> = r.expose.iter().map(Port::canonical).collect();
            let what = [
                r.entrypoint.as_ref().map(|e| format!("ENTRYPOINT {e:?}")),
                r.cmd.as_ref().map(|c| format!("CMD {c:?}")),
                (!ports.is_empty()).then(|| format!("EXPOSE {}", ports.join(" "))),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            steps.push(Step::Config { what, edit: json!({"entrypoint": r.entrypoint, "cmd": r.cmd, "expose": ports}) });
        }
        let total = steps.len() + 1;
        let mut img = self.base(&r.base, dir, total)?;
        for (i, step) in steps.iter().enumerate() {
            img = self.step(&img, step, i + 2, total)?;
        }
        let name = tag.map(String::from).or_else(|| r.name.clone());
        if let Some(name) = name {
            let name = crate::image::reference::normalize(&name)
                .map_err(|e| RecipeError::Parse { path: "tag".into(), msg: e.to_string() })?;
            self.store.tag(&img, &name)?;
            img = self.store.resolve(&name)?;
            self.say(format_args!("{name} = {} ({:.1?})", img.id.short(), start.elapsed()));
        } else {
            self.say(format_args!("image {} ({:.1?})", img.id.short(), start.elapsed()));
        }
        Ok(img)
    }

    /// A cached step result, if its image and all its layers are still in the store.
    fn cached(&self, key: &str) -> Result<Option<ImageRecord>, RecipeError> {
        match self.store.resolve(&format!("{CACHE_REPO}:{key}")) {
            Ok(img) if img.layers.iter().all(|l| self.store.has_layer(&l.diff_id)) => Ok(Some(img)),
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn work_dir(&self, name: &str) -> PathBuf {
        self.store.root().join("build").join(unique(name))
    }

    fn base(&mut self, base: &str, dir: Option<&Path>, total: usize) -> Result<ImageRecord, RecipeError> {
        let names = |key: &str| vec![format!("{CACHE_REPO}:{key}")];
        if base == "busybox" {
            let bytes = base::read_busybox()?;
            let key = step_key(None, "base-busybox", &Digest::of(&bytes).to_string());
            if let Some(img) = self.cached(&key)? {
                self.say(format_args!("step 1/{total}: FROM busybox (host) — cached"));
                return Ok(img);
            }
            self.say(format_args!("step 1/{total}: FROM busybox (host {})", base::HOST_BUSYBOX));
            let work = self.work_dir("busybox");
            mkdirs(&work)?;
            let layer = base::busybox_layer(self.store, &bytes, &work.join("layer.tar.zst"));
            let _ = std::fs::remove_dir_all(&work);
            return layer::write_image(
                self.store,
                None,
                Some(layer?),
                "beam: busybox from the host",
                &names(&key),
                |c| {
                    c.insert("Env".into(), json!([bundle::DEFAULT_PATH]));
                    c.insert("Cmd".into(), json!(["sh"]));
                },
            );
        }
        if let Some(suite) = base.strip_prefix("debootstrap:") {
            let mirror = base::host_mirror(suite);
            let key = step_key(None, "base-debootstrap", &format!("minbase {suite} {mirror}"));
            if let Some(img) = self.cached(&key)? {
                self.say(format_args!("step 1/{total}: FROM {base} — cached"));
                return Ok(img);
            }
            self.say(format_args!("step 1/{total}: FROM {base} (debootstrap from {mirror})"));
            let work = self.work_dir("debootstrap");
            let layer = base::debootstrap_layer(self.store, suite, &mirror, &work, self.opts.quiet);
            let _ = std::fs::remove_dir_all(&work);
            let created_by = format!("debootstrap --variant=minbase {suite} {mirror}");
            return layer::write_image(self.store, None, Some(layer?), &created_by, &names(&key), |c| {
                c.insert("Env".into(), json!([bundle::DEFAULT_PATH]));
                c.insert("Cmd".into(), json!(["bash"]));
            });
        }
        if let Some(name) = base.strip_prefix("recipe:") {
            let dir = dir.ok_or_else(|| RecipeError::Base {
                base: base.into(),
                msg: "an inline recipe can't use recipe: bases; build it from a file in images/".into(),
            })?;
            let file = if name.ends_with(".toml") { dir.join(name) } else { dir.join(format!("{name}.toml")) };
            self.say(format_args!("step 1/{total}: FROM {base} ({})", file.display()));
            return self.build_file(&file, None);
        }
        let img = self.store.resolve(base)?;
        self.say(format_args!("step 1/{total}: FROM {base} ({})", img.id.short()));
        Ok(img)
    }

    fn step(&mut self, parent: &ImageRecord, step: &Step, n: usize, total: usize) -> Result<ImageRecord, RecipeError> {
        let (kind, content, shown) = match step {
            Step::Config { what, edit } => ("config", edit.to_string(), what.as_str()),
            Step::Run { kind, script, shown } => (*kind, script.clone(), shown.as_str()),
        };
        let key = step_key(Some(&parent.id), kind, &content);
        if let Some(img) = self.cached(&key)? {
            self.say(format_args!("step {n}/{total}: {shown} — cached"));
            return Ok(img);
        }
        self.say(format_args!("step {n}/{total}: {shown}"));
        let names = vec![format!("{CACHE_REPO}:{key}")];
        match step {
            Step::Config { edit, .. } => {
                layer::write_image(self.store, Some(parent), None, shown, &names, |c| apply_config(c, edit))
            }
            Step::Run { script, .. } => {
                let layer = self.run_and_commit(parent, script)?;
                layer::write_image(
                    self.store,
                    Some(parent),
                    Some(layer),
                    &format!("/bin/sh -c {script}"),
                    &names,
                    |_| {},
                )
            }
        }
    }

    /// Run `script` in a container on `parent` (host network, writable) and commit its upper dir.
    fn run_and_commit(
        &mut self,
        parent: &ImageRecord,
        script: &str,
    ) -> Result<crate::image::store::LayerRecord, RecipeError> {
        let rerr = |msg: String| RecipeError::Run { command: script.into(), msg };
        let work = self.work_dir("step");
        let log = self.store.root().join("build").join(format!("{}.log", unique("step")));
        let redirect = if self.opts.quiet { " >/dev/.beam-build.log 2>&1" } else { "" };
        // The host's network comes with the host's trust store: on hosts whose egress goes through a
        // TLS-inspecting proxy, pip/curl in the step need the host's CA bundle. It is bind-mounted under the
        // container's /dev (a tmpfs, so never committed) and named by the usual variables of this step only.
        let host_ca = HOST_CA_BUNDLES.iter().map(Path::new).find(|p| p.is_file());
        let env = match host_ca {
            Some(_) => CA_VARS.iter().map(|v| format!("{v}={STEP_CA}")).collect(),
            None => Vec::new(),
        };
        let o = Overrides {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), format!("exec </dev/null{redirect}\n{script}")]),
            cmd: Some(Vec::new()),
            env,
            network: true,
            ..Overrides::default()
        };
        let b = bundle::create(self.store, parent, &work, &o)?;
        // Keep the thread's signal mask as it was (run() blocks the terminating signals to forward them);
        // restored only after the bundle is gone, so a Ctrl-C during the step can't leak the mount.
        let _mask = SigmaskGuard::save();
        let result = (|| {
            let mut mounts = Vec::new();
            if self.opts.quiet {
                std::fs::write(&log, b"").map_err(|e| rerr(format!("{}: {e}", log.display())))?;
                mounts.push(json!({
                    "destination": "/dev/.beam-build.log", "type": "bind", "source": log, "options": ["bind", "rw"],
                }));
            }
            if let Some(ca) = host_ca {
                mounts.push(json!({
                    "destination": STEP_CA, "type": "bind", "source": ca, "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
                }));
            }
            if !mounts.is_empty() {
                let mut spec: Value =
                    serde_json::from_slice(&std::fs::read(b.config_path()).map_err(|e| rerr(e.to_string()))?)
                        .map_err(|e| rerr(e.to_string()))?;
                spec["mounts"].as_array_mut().expect("mounts").extend(mounts);
                std::fs::write(b.config_path(), serde_json::to_vec_pretty(&spec).expect("json"))
                    .map_err(|e| rerr(e.to_string()))?;
            }
            let root =
                crate::runtime::state::Root::new(&self.store.root().join("run")).map_err(|e| rerr(e.to_string()))?;
            let opts = crate::runtime::verbs::run::RunOptions::foreground(unique("beam-build"), b.dir.clone());
            let started = Instant::now();
            let code = crate::runtime::verbs::run::run(&root, opts)
                .map_err(|e| rerr(format!("running the container: {e}")))?;
            let ran = started.elapsed();
            if code != 0 {
                let tail =
                    std::fs::read_to_string(&log).map_or(String::new(), |t| format!(":\n{}", base::last_lines(&t, 30)));
                return Err(RecipeError::StepFailed { command: script.into(), code, log: tail });
            }
            let mut w = layer::LayerWriter::create(&work.with_extension("layer.tar.zst"))?;
            let o = layer::TreeOptions { overlay_upper: true, skip_files: &b.host_files, mtime: None, id_range: None };
            let started = Instant::now();
            layer::append_tree(&mut w.tar, &b.rootfs.upper, &o)?;
            let layer = w.finish(self.store)?;
            self.say(format_args!(
                "  ran in {ran:.1?}; committed {} ({} compressed) in {:.1?}",
                layer.diff_id.short(),
                human_size(layer.size),
                started.elapsed()
            ));
            Ok(layer)
        })();
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(work.with_extension("layer.tar.zst"));
        let destroyed = b.destroy();
        let layer = result?;
        destroyed?;
        Ok(layer)
    }
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Apply a config step's changes to an image config's `config` object.
fn apply_config(c: &mut serde_json::Map<String, Value>, edit: &Value) {
    if let Some(env) = edit["env"].as_array().filter(|e| !e.is_empty()) {
        let base: Vec<String> = c
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        let over: Vec<String> = env.iter().filter_map(|v| v.as_str().map(String::from)).collect();
        c.insert("Env".into(), json!(bundle::merge_env(&base, &over)));
    }
    if let Some(w) = edit["workdir"].as_str() {
        c.insert("WorkingDir".into(), json!(w));
    }
    if let Some(e) = edit.get("entrypoint").filter(|e| !e.is_null()) {
        c.insert("Entrypoint".into(), e.clone());
        if edit["cmd"].is_null() {
            c.remove("Cmd"); // Docker: a new ENTRYPOINT resets the inherited CMD
        }
    }
    if let Some(cmd) = edit.get("cmd").filter(|c| !c.is_null()) {
        c.insert("Cmd".into(), cmd.clone());
    }
    if let Some(ports) = edit["expose"].as_array().filter(|p| !p.is_empty()) {
        let map = c.entry("ExposedPorts").or_insert_with(|| json!({}));
        if !map.is_object() {
            *map = json!({});
        }
        for p in ports.iter().filter_map(Value::as_str) {
            map.as_object_mut().expect("object").insert(p.into(), json!({}));
        }
    }
}

fn mkdirs(p: &Path) -> Result<(), RecipeError> {
    std::fs::create_dir_all(p)
        .map_err(|e| RecipeError::Io { context: format!("creating {}", p.display()), msg: e.to_string() })
}

/// Single-quote for /bin/sh.
fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.=+,:/@%".contains(c)) {
        s.into()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Restores the calling thread's signal mask on drop.
struct SigmaskGuard(libc::sigset_t);

impl SigmaskGuard {
    fn save() -> Self {
        // SAFETY: an all-zero sigset_t is valid storage; pthread_sigmask fills it.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: reading the mask only (set is NULL).
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut old) };
        Self(old)
    }
}

impl Drop for SigmaskGuard {
    fn drop(&mut self) {
        // SAFETY: restoring a mask read earlier.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let e = Recipe::parse("base = \"busybox\"\ncomands = [\"x\"]\n", "t.toml").unwrap_err().to_string();
        assert!(e.contains("comands") && e.contains("t.toml"), "{e}");
        let e = Recipe::parse("name = \"x\"\n", "t.toml").unwrap_err().to_string();
        assert!(e.contains("base"), "{e}");
    }

    #[test]
    fn shipped_recipes_parse() {
        for f in ["busybox", "debian", "python", "jupyter"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("images").join(format!("{f}.toml"));
            Recipe::parse(&std::fs::read_to_string(&path).unwrap(), f).unwrap();
        }
        assert_eq!(Recipe::parse(BUSYBOX_RECIPE, "embedded").unwrap().base, "busybox");
    }

    #[test]
    fn config_edits_follow_docker() {
        let mut c = serde_json::Map::new();
        c.insert("Env".into(), json!(["PATH=/bin", "A=1"]));
        c.insert("Cmd".into(), json!(["sh"]));
        apply_config(&mut c, &json!({"env": ["A=2", "B=3"], "workdir": "/app"}));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(c["WorkingDir"], "/app");
        apply_config(&mut c, &json!({"entrypoint": ["python3"], "cmd": null, "expose": ["8888/tcp"]}));
        assert!(!c.contains_key("Cmd"));
        assert_eq!(c["ExposedPorts"], json!({"8888/tcp": {}}));
        assert_eq!(shell_quote("notebook>=7"), "'notebook>=7'");
        assert_eq!(shell_quote("notebook==7.2"), "notebook==7.2");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
        assert_eq!(Port::Number(8888).canonical(), "8888/tcp");
        assert_ne!(step_key(None, "run", "a"), step_key(None, "run", "b"));
    }
}
