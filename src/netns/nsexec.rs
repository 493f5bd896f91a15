//! Running work inside a network namespace: a fresh std thread joins it with `setns` (network namespaces
//! are per thread), does its work (plain code, or rtnetlink on a current-thread tokio runtime), and ends,
//! so no thread of the caller ever changes namespace. Also the small netlink look-ups the other modules
//! share.

use std::future::Future;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use futures_util::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};

use super::error::{NetError, Result, errno, io, nl};

/// Open the network namespace of process `pid` (`/proc/<pid>/ns/net`).
pub fn open_netns_of_pid(pid: i32) -> Result<OwnedFd> {
    let path = format!("/proc/{pid}/ns/net");
    let f = std::fs::File::open(&path).map_err(io(format!("opening {path} (is process {pid} alive?)")))?;
    Ok(f.into())
}

/// Open the network namespace of the calling thread (`/proc/thread-self/ns/net`): beamd's own, the host's.
pub fn open_current_netns() -> Result<OwnedFd> {
    let f = std::fs::File::open("/proc/thread-self/ns/net").map_err(io("opening /proc/thread-self/ns/net"))?;
    Ok(f.into())
}

/// Run `f` on a new thread that first joins the network namespace `ns`.
pub(crate) fn in_netns<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let raw = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns changes only this (new, scoped) thread's network namespace; `raw` is borrowed
            // from a live fd for the whole scope.
            if unsafe { libc::setns(raw, libc::CLONE_NEWNET) } != 0 {
                return Err(io("joining a network namespace (setns CLONE_NEWNET; beamd must run as root)")(
                    std::io::Error::last_os_error(),
                ));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(NetError::Invalid("a network namespace worker thread panicked".into())))
    })
}

/// Run the future made by `f` with an rtnetlink handle whose socket lives in the namespace `ns`.
pub(crate) fn with_netlink<T, F, Fut>(ns: BorrowedFd<'_>, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(io("starting a tokio runtime for netlink"))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(io("opening a netlink socket"))?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    })
}

/// The index of link `name`, or None when there is no such link.
pub(crate) async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>> {
    match h.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

/// Like [`link_index`] but missing is an error.
pub(crate) async fn need_link(h: &Handle, name: &str) -> Result<u32> {
    link_index(h, name).await?.ok_or_else(|| NetError::Io {
        what: format!("link {name}"),
        err: std::io::Error::from_raw_os_error(libc::ENODEV),
    })
}

/// Every link of the namespace.
pub(crate) async fn all_links(h: &Handle) -> Result<Vec<LinkMessage>> {
    h.link().get().execute().try_collect().await.map_err(nl("listing links"))
}

/// The name of a link message.
pub(crate) fn link_name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Bring a link up by index.
pub(crate) async fn set_up(h: &Handle, index: u32, what: &str) -> Result<()> {
    h.link()
        .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {what} up")))
}

/// Delete a link by name; a missing link is fine.
pub(crate) async fn delete_link(h: &Handle, name: &str) -> Result<bool> {
    let Some(index) = link_index(h, name).await? else { return Ok(false) };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(nl(format!("deleting link {name}"))(e)),
    }
}

/// Bring `lo` up in the network namespace `ns` (what `network: none` gives a sandbox).
pub fn loopback_up(ns: BorrowedFd<'_>) -> Result<()> {
    with_netlink(ns, |h| async move {
        let lo = need_link(&h, "lo").await?;
        set_up(&h, lo, "lo").await
    })
}
