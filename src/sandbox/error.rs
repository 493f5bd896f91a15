//! The one error type of the sandbox layer. Variants say what went wrong in the domain's terms (a
//! sandbox that isn't there, one that isn't running, a field that is wrong, the store, the network or the
//! runtime failing); the daemon maps them to an HTTP status and slug, in one place
//! (`daemon::http::HttpError::from`). Every message names the thing and the fix.

use crate::api::SandboxState;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A request field is wrong: `field` names it (as the API spells it), the message says how to fix it.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// No sandbox has this id or name.
    #[error("no sandbox {reference:?}; `beam container list -a` shows them all")]
    NotFound { reference: String },
    /// The operation needs a running sandbox.
    #[error("sandbox {id} is {}, not running; start a new one with `beam run`", state.as_str())]
    NotRunning { id: String, state: SandboxState },
    /// The operation needs an exited sandbox.
    #[error("sandbox {id} is still {}; stop it first", state.as_str())]
    StillRunning { id: String, state: SandboxState },
    /// Names are unique among the sandboxes beamd knows.
    #[error("a sandbox named {name:?} already exists; pick another name or remove it (`beam rm {name}`)")]
    NameTaken { name: String },
    /// Another conflict with the current state (a host port in use, every uid range taken, …).
    #[error("{0}")]
    Conflict(String),
    /// The image could not be found, built or pulled.
    #[error("{0}")]
    Image(String),
    /// Sandbox networking (bridge, veths, firewall, leases).
    #[error("sandbox networking: {0}")]
    Net(#[from] crate::netns::NetError),
    /// The image store.
    #[error(transparent)]
    Store(#[from] crate::image::store::StoreError),
    /// The sandbox's bundle from its image (a bad entrypoint, user or config is the caller's).
    #[error(transparent)]
    Bundle(#[from] crate::image::bundle::BundleError),
    /// The runtime failed to make or run the container.
    #[error(transparent)]
    Runtime(crate::runtime::verbs::Error),
    /// Writing a snapshot's layer or image.
    #[error(transparent)]
    Layer(#[from] crate::image::recipe::RecipeError),
    /// The sandbox's own process refused its configuration (the text names the field and the fix).
    #[error("starting the sandbox: {0}")]
    Start(String),
    /// A file or system call of beamd's own.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    /// Anything else that is beamd's fault, not the caller's.
    #[error("{0}")]
    Internal(String),
}

impl SandboxError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> SandboxError {
        SandboxError::Invalid { field, message: message.into() }
    }

    /// `map_err(SandboxError::io("what"))`.
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> SandboxError {
        let what = what.to_string();
        move |err| SandboxError::Io { what, err }
    }

    /// The request field at fault, for errors that are the caller's.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SandboxError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<crate::runtime::verbs::Error> for SandboxError {
    /// The container's own report of a bad configuration is the caller's to fix ([`SandboxError::Start`]).
    fn from(e: crate::runtime::verbs::Error) -> Self {
        match e {
            crate::runtime::verbs::Error::Child(m) => SandboxError::Start(m),
            other => SandboxError::Runtime(other),
        }
    }
}

impl From<crate::random::RandomError> for SandboxError {
    fn from(e: crate::random::RandomError) -> Self {
        SandboxError::Internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, SandboxError>;
