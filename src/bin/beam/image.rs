//! `beam image …`: the local image store under `--root`. These work on the store directly, in this
//! process, not through beamd; `beam image run` runs its container on beam's runtime library here too.

use crate::human;
use beam::image::archive::{self, ArchiveError};
use beam::image::bundle::{self, BundleError, Overrides};
use beam::image::recipe::{self, BuildOptions, RecipeError};
use beam::image::registry::{self, PullOptions, PushOptions, RegistryError};
use beam::image::store::{ImageRecord, Store, StoreError};
use beam::runtime::state::Root;
use beam::runtime::verbs::{self, run::RunOptions};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Runtime(#[from] verbs::Error),
    #[error("{0}")]
    Usage(String),
}

#[derive(Args, Clone, Default)]
pub struct Auth {
    /// Registry user name (else ~/.docker/config.json, else anonymous).
    #[arg(long, short = 'u')]
    username: Option<String>,
    /// Registry password (prefer --password-stdin).
    #[arg(long, short = 'p')]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Allow plain http / unverified registries other than localhost.
    #[arg(long)]
    insecure: bool,
    /// No progress bars.
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl Auth {
    fn password(&self) -> Result<Option<String>, CliError> {
        if self.password_stdin {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|e| CliError::Usage(format!("--password-stdin: {e}")))?;
            return Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()));
        }
        Ok(self.password.clone())
    }
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// Pull an image from a registry (plain http only for localhost or with --insecure).
    Pull {
        reference: String,
        /// os/arch to pick from a multi-platform image (default: this host's).
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        auth: Auth,
    },
    /// Push a local image to a registry (as TARGET, default its own name).
    Push {
        image: String,
        target: Option<String>,
        #[command(flatten)]
        auth: Auth,
    },
    /// Import an OCI layout dir, an oci-archive or a docker-archive (`docker save`) tar.
    Import {
        path: PathBuf,
        /// Name the imported image.
        #[arg(long)]
        name: Option<String>,
    },
    /// Build an image from a recipe: a .toml path, or the name of one in images/ (`busybox` is built in).
    Build {
        recipe: String,
        /// Tag the result.
        #[arg(short, long)]
        tag: Option<String>,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        #[arg(long, default_value = "table")]
        format: String,
        /// Also show the recipe build cache (beam.local/cache:…).
        #[arg(short, long)]
        all: bool,
    },
    /// Show an image's record and config (JSON, or a short summary with --format table).
    Inspect {
        image: String,
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Remove image names (the image goes with its last name; layers with `gc`).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Delete blobs and layers no image or live container uses.
    Gc,
    /// Run a command in a fresh container of an image, in the foreground, and clean up (without beamd).
    Run {
        image: String,
        #[arg(long)]
        entrypoint: Option<String>,
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(short, long)]
        workdir: Option<String>,
        #[arg(short, long)]
        user: Option<String>,
        /// Share the host's network (default: an isolated, empty network namespace).
        #[arg(long)]
        host_network: bool,
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
}

fn pull_opts(a: &Auth, platform: Option<String>) -> Result<PullOptions, CliError> {
    Ok(PullOptions {
        username: a.username.clone(),
        password: a.password()?,
        insecure: a.insecure,
        quiet: a.quiet,
        platform,
        ..Default::default()
    })
}

/// A recipe argument: a path, `busybox` (embedded), or a name of images/NAME.toml beside the binary's repo.
fn build(store: &Store, recipe: &str, opts: &BuildOptions) -> Result<ImageRecord, CliError> {
    let path = Path::new(recipe);
    if path.exists() {
        return Ok(recipe::build(store, path, opts)?);
    }
    let in_images = Path::new("images").join(format!("{recipe}.toml"));
    if in_images.exists() {
        return Ok(recipe::build(store, &in_images, opts)?);
    }
    if recipe == "busybox" {
        return Ok(recipe::build_str(store, recipe::BUSYBOX_RECIPE, None, opts)?);
    }
    Err(CliError::Usage(format!(
        "recipe {recipe:?}: no such file, no images/{recipe}.toml here, and not a built-in (busybox); pass a recipe path"
    )))
}

/// `<containers>/<id>.lock`, locked exclusively for this process's lifetime (the lock goes with the process).
fn owner_lock(containers: &Path, id: &str) -> Result<nix::fcntl::Flock<std::fs::File>, CliError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(containers).map_err(|e| CliError::Usage(format!("{}: {e}", containers.display())))?;
    let path = containers.join(format!("{id}.lock"));
    loop {
        let f = std::fs::File::create(&path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        let l = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| CliError::Usage(format!("{}: {e}", path.display())))?;
        // A reaper may have taken the fresh file for an orphan and unlinked it before we locked it: retry.
        if l.metadata().map(|m| m.nlink()).unwrap_or(0) > 0 {
            return Ok(l);
        }
    }
}

/// Clean up after `beam image run`s that died without cleaning up (SIGKILL): any `<id>.lock` nobody holds
/// means its container, rootfs mount, layer pin and dir are orphans. Best effort: a failure is a warning.
fn reap_stale(store: &Store, rt: &Root, containers: &Path) {
    let Ok(rd) = std::fs::read_dir(containers) else { return };
    for e in rd.flatten() {
        let path = e.path();
        let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".lock")) else { continue };
        let Ok(f) = std::fs::File::open(&path) else { continue };
        let Ok(_held) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) else { continue };
        tracing::info!("cleaning up container {id}, left by a beam that died");
        if let Err(e) = verbs::delete::delete(rt, id, true) {
            tracing::warn!("stale container {id}: {e}");
            continue;
        }
        match bundle::remove_stale(store, &containers.join(id)) {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => tracing::warn!("stale container {id}: {e}"),
        }
    }
}

/// The image's names for output, without the recipe cache's internal ones.
fn names(img: &ImageRecord) -> String {
    let cache = format!("{}:", recipe::CACHE_REPO);
    let shown: Vec<&str> = img.names.iter().map(String::as_str).filter(|n| !n.starts_with(&cache)).collect();
    if shown.is_empty() { "<none>".into() } else { shown.join(", ") }
}

pub fn run(root: &Path, cmd: ImageCmd) -> Result<i32, CliError> {
    let store = Store::open(&root.join("images"))?;
    match cmd {
        ImageCmd::Pull { reference, platform, auth } => {
            let img = registry::pull(&store, &reference, &pull_opts(&auth, platform)?)?;
            println!("{} {}", names(&img), img.id);
        }
        ImageCmd::Push { image, target, auth } => {
            let o = pull_opts(&auth, None)?;
            let opts = PushOptions { username: o.username, password: o.password, insecure: o.insecure, quiet: o.quiet, ..Default::default() };
            let target = target.unwrap_or_else(|| image.clone());
            let d = registry::push(&store, &image, &target, &opts)?;
            println!("{target}@{d}");
        }
        ImageCmd::Import { path, name } => {
            for img in archive::import(&store, &path, name.as_deref())? {
                println!("{} {}", names(&img), img.id);
            }
        }
        ImageCmd::Build { recipe, tag, quiet } => {
            let img = build(&store, &recipe, &BuildOptions { tag, quiet })?;
            println!("{} {}", names(&img), img.id);
        }
        ImageCmd::Ls { format, all } => {
            let mut imgs = store.images()?;
            if !all {
                let cache = format!("{}:", recipe::CACHE_REPO);
                for img in &mut imgs {
                    img.names.retain(|n| !n.starts_with(&cache));
                }
                imgs.retain(|i| !i.names.is_empty());
            }
            imgs.sort_by_key(|i| std::cmp::Reverse(i.added));
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&imgs).expect("json")),
                "table" => {
                    let w = imgs.iter().flat_map(|i| i.names.iter().map(String::len)).max().unwrap_or(0).max(6);
                    println!("{:<w$}  {:<12}  {:<16}  {:>10}", "NAME", "IMAGE ID", "CREATED", "SIZE");
                    for img in &imgs {
                        let size: u64 = img.layers.iter().map(|l| l.size).sum();
                        let shown: Vec<&str> = if img.names.is_empty() { vec!["<none>"] } else { img.names.iter().map(String::as_str).collect() };
                        for n in shown {
                            println!("{:<w$}  {:<12}  {:<16}  {:>10}", n, img.id.short(), human::age(img.added), human::size(size));
                        }
                    }
                }
                f => return Err(CliError::Usage(format!("--format {f:?}: use table or json"))),
            }
        }
        ImageCmd::Inspect { image, format } => {
            let img = store.resolve(&image)?;
            let config = store.config(&img)?;
            match format.as_str() {
                "json" => {
                    let v = serde_json::json!({"record": img, "config": config});
                    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
                }
                "table" => {
                    let c = config.config().clone().unwrap_or_default();
                    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default().join(" ");
                    println!("ID          {}", img.id);
                    println!("NAMES       {}", names(&img));
                    println!("MANIFEST    {} ({})", img.manifest, img.manifest_media_type);
                    println!("PLATFORM    {}/{}", config.os(), config.architecture());
                    println!("ADDED       {}", human::age(img.added));
                    println!("ENTRYPOINT  {}", list(c.entrypoint()));
                    println!("CMD         {}", list(c.cmd()));
                    println!("WORKDIR     {}", c.working_dir().clone().unwrap_or_default());
                    println!("USER        {}", c.user().clone().unwrap_or_default());
                    println!("ENV         {}", list(c.env()));
                    for (i, l) in img.layers.iter().enumerate() {
                        println!("LAYER {i:<4}  {} {:>10}  {}", l.blob.short(), human::size(l.size), l.media_type);
                    }
                }
                f => return Err(CliError::Usage(format!("--format {f:?}: use json or table"))),
            }
        }
        ImageCmd::Rm { images } => {
            for i in images {
                store.remove(&i)?;
                println!("untagged {i}");
            }
        }
        ImageCmd::Gc => {
            let r = store.gc()?;
            println!("removed {} blobs and {} layers, {}", r.blobs, r.layers, human::size(r.bytes));
        }
        ImageCmd::Run { image, entrypoint, env, workdir, user, host_network, tty, cmd } => {
            let img = store.resolve(&image)?;
            let rt = Root::new(&root.join("run")).map_err(verbs::Error::from)?;
            let containers = root.join("containers");
            reap_stale(&store, &rt, &containers);
            let id = format!("run-{}-{}", std::process::id(), img.id.short());
            let dir = containers.join(&id);
            // Held for as long as this process lives: a later `beam image run` that can take it knows we died.
            let _owner = owner_lock(&containers, &id)?;
            let o = Overrides {
                entrypoint: entrypoint.map(|e| vec![e]),
                cmd: if cmd.is_empty() { None } else { Some(cmd) },
                env,
                workdir,
                user,
                network: host_network,
                terminal: tty,
                ..Default::default()
            };
            let b = bundle::create(&store, &img, &dir, &o)?;
            let opts = RunOptions::foreground(id.clone(), b.dir.clone());
            let code = verbs::run::run(&rt, opts);
            b.destroy()?;
            let _ = std::fs::remove_file(containers.join(format!("{id}.lock")));
            return Ok(code?);
        }
    }
    Ok(0)
}
