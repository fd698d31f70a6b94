//! A machine of the testbed: a network namespace with one address.

use std::ffi::OsStr;
use std::io;
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::process::Command;
use std::time::Duration;

use super::netns;

/// A host (or router) of the testbed: its namespace and its addresses. Programs run on it with
/// [`Host::command`]; sockets are made on it with [`Host::run`] (or the socket helpers), after
/// which any thread of the test may use them.
#[derive(Debug, Clone)]
pub struct Host {
    pub(super) name: String,
    pub(super) netns: String,
    pub(super) addr: Ipv4Addr,
    pub(super) public_addr: Ipv4Addr,
    /// Its IPv6 address and the one the internet sees, on a testbed with IPv6.
    pub(super) addr6: Option<(Ipv6Addr, Ipv6Addr)>,
}

impl Host {
    /// Its name in the topology (`public0`, `home1-host0`, `home1-router`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace, for `ip netns exec` or `ip -n`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its own address: public for public hosts, private (10.x) inside a home. A router's is
    /// its LAN address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The address the internet sees its packets come from: its own for a public host, its
    /// router's public address inside a home (the port depends on the NAT).
    pub fn public_addr(&self) -> Ipv4Addr {
        self.public_addr
    }

    /// Its own IPv6 address (a ULA inside a home), on a testbed built with
    /// [`Spec::ipv6`](super::Spec::ipv6).
    pub fn addr6(&self) -> Option<Ipv6Addr> {
        self.addr6.map(|(own, _)| own)
    }

    /// The IPv6 address the internet sees its packets come from (its router's inside a home).
    pub fn public_addr6(&self) -> Option<Ipv6Addr> {
        self.addr6.map(|(_, public)| public)
    }

    /// `program` to be run on this host (`ip netns exec NETNS program`); add arguments and
    /// spawn it as any `Command`. The child is the program itself (ip execs it), so killing the
    /// child kills the program.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    /// Runs `f` inside this host's namespace (on a short-lived thread) and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        netns::in_netns(&self.netns, f)
            .unwrap_or_else(|e| panic!("cannot enter {}'s namespace: {e:#}", self.name))
    }

    /// A UDP socket bound to this host's address and `port` (0 for any).
    pub fn udp_socket(&self, port: u16) -> io::Result<UdpSocket> {
        let addr = SocketAddrV4::new(self.addr, port);
        self.run(|| UdpSocket::bind(addr))
    }

    /// A TCP listener on this host's address and `port` (0 for any).
    pub fn tcp_listener(&self, port: u16) -> io::Result<TcpListener> {
        let addr = SocketAddrV4::new(self.addr, port);
        self.run(|| TcpListener::bind(addr))
    }

    /// A UDP socket bound to this host's IPv6 address and `port` (0 for any).
    pub fn udp_socket6(&self, port: u16) -> io::Result<UdpSocket> {
        let addr = SocketAddrV6::new(self.ipv6_or_err()?, port, 0, 0);
        self.run(|| UdpSocket::bind(addr))
    }

    /// A TCP listener on this host's IPv6 address and `port` (0 for any).
    pub fn tcp_listener6(&self, port: u16) -> io::Result<TcpListener> {
        let addr = SocketAddrV6::new(self.ipv6_or_err()?, port, 0, 0);
        self.run(|| TcpListener::bind(addr))
    }

    fn ipv6_or_err(&self) -> io::Result<Ipv6Addr> {
        self.addr6().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "{} has no IPv6 address: build the testbed with Spec::ipv6",
                    self.name
                ),
            )
        })
    }

    /// A TCP connection from this host to `to`.
    pub fn tcp_connect(&self, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.run(|| TcpStream::connect_timeout(&to, timeout))
    }
}
