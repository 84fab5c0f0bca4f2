//! Who holds a TCP port: the pid and program listening on it, for the messages of a daemon that
//! cannot bind its port and of `exai doctor`. Read from the OS (`/proc` on Linux) by the
//! `listeners` crate; `None` when the holder is not visible (another user's process, another
//! network namespace).

use std::fmt;

/// The process listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    /// Its process id.
    pub pid: u32,
    /// Its program name, as the OS reports it (`exai-ws`, `nginx`, …).
    pub name: String,
}

impl PortHolder {
    /// Whether the holder is an exai daemon.
    pub fn is_exai_ws(&self) -> bool {
        self.name == "exai-ws"
    }
}

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// The process listening on TCP `port`, if the OS lets this process see it.
pub fn port_holder(port: u16) -> Option<PortHolder> {
    let process = listeners::get_process_by_port(port, listeners::Protocol::TCP).ok()?;
    Some(PortHolder {
        pid: process.pid,
        name: process.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_this_process_as_the_holder_of_its_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let holder = port_holder(port).unwrap_or_else(|| panic!("no holder for {port}"));
        assert_eq!(holder.pid, std::process::id());
        assert!(!holder.is_exai_ws());
        drop(listener);
        assert_eq!(port_holder(port), None);
    }
}
