//! A small rtnetlink client: just the requests the bridge driver makes
//! (create a bridge or a veth pair, set a link up, add an address or the
//! default route, delete a link), each sent on a `NETLINK_ROUTE` socket and
//! answered by an acknowledgement. Messages are built by hand (the formats are
//! in `linux/rtnetlink.h` and `linux/if_link.h`); sockets and `setns` go
//! through rustix's safe wrappers, so there is no unsafe code here.
//!
//! A socket belongs to the network namespace it was created in:
//! [`Netlink::open_in`] creates one on a short-lived thread that has entered
//! the target namespace (setns into a network namespace works from a threaded
//! process), and the socket keeps acting on that namespace afterwards.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_GATEWAY: u16 = 5;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// A netlink request under construction.
#[derive(Debug)]
pub(crate) struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(ty: u16, flags: u16) -> Message {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]); // seq, pid
        Message {
            buf,
            nests: Vec::new(),
        }
    }

    /// `struct ifinfomsg`.
    fn ifinfo(mut self, index: u32, flags: u32, change: u32) -> Message {
        self.buf.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Message {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn attr_str(&mut self, ty: u16, s: &str) -> &mut Message {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(ty, &data)
    }

    fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Message {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn pad(&mut self) {
        while self.buf.len() & 3 != 0 {
            self.buf.push(0);
        }
    }

    fn begin(&mut self, ty: u16) -> &mut Message {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Message {
        if let Some(at) = self.nests.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// Reads the acknowledgement of request `seq` out of `reply`: `Some(Ok)` for
/// success, `Some(Err)` for the kernel's errno, `None` if not in this batch.
fn parse_ack(reply: &[u8], seq: u32) -> Option<io::Result<()>> {
    let mut at = 0;
    while at + 16 <= reply.len() {
        let word =
            |o: usize| u32::from_ne_bytes([reply[o], reply[o + 1], reply[o + 2], reply[o + 3]]);
        let len = word(at) as usize;
        let ty = u16::from_ne_bytes([reply[at + 4], reply[at + 5]]);
        if len < 16 || at + len > reply.len() {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed netlink reply",
            )));
        }
        if ty == NLMSG_ERROR && word(at + 8) == seq && len >= 20 {
            let code = word(at + 16) as i32;
            return Some(if code == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-code))
            });
        }
        at += (len + 3) & !3;
    }
    None
}

/// A `NETLINK_ROUTE` socket in one network namespace.
#[derive(Debug)]
pub(crate) struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Netlink> {
        // NETLINK_ROUTE is protocol 0.
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// A socket in the network namespace `netns` (an open nsfs file).
    pub(crate) fn open_in(netns: &File) -> io::Result<Netlink> {
        let ns = netns.try_clone()?;
        std::thread::scope(|s| {
            s.spawn(move || {
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }

    fn request(&mut self, msg: Message) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        rustix::net::send(&self.fd, &bytes, SendFlags::empty())?;
        let mut buf = vec![0u8; 16384];
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            if let Some(result) = parse_ack(&buf[..n], seq) {
                return result;
            }
        }
    }

    /// The index of the link `name`; `NotFound` if there is none.
    pub(crate) fn index(&self, name: &str) -> io::Result<u32> {
        rustix::net::netdevice::name_to_index(&self.fd, name).map_err(|e| {
            if e == rustix::io::Errno::NODEV {
                io::Error::new(io::ErrorKind::NotFound, format!("no link {name}"))
            } else {
                e.into()
            }
        })
    }

    /// `ip link add NAME address MAC mtu MTU type bridge`.
    pub(crate) fn create_bridge(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name)
            .attr(IFLA_ADDRESS, &mac)
            .attr_u32(IFLA_MTU, mtu);
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        self.request(m)
    }

    /// A veth pair: `host` here, up and enslaved to `master`; `peer` created
    /// directly in the namespace `peer_netns` (down).
    pub(crate) fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_netns: &File,
        mtu: u32,
    ) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, host)
            .attr_u32(IFLA_MTU, mtu)
            .attr_u32(IFLA_MASTER, master);
        m.begin(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "veth");
        m.begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
        // The peer's attributes follow a struct ifinfomsg of its own.
        m.buf.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
        m.buf.extend_from_slice(&[0; 12]);
        m.attr_str(IFLA_IFNAME, peer)
            .attr_u32(IFLA_MTU, mtu)
            .attr_u32(IFLA_NET_NS_FD, peer_netns.as_raw_fd() as u32);
        m.end().end().end();
        self.request(m)
    }

    /// `ip link set dev INDEX [mtu MTU] up`.
    pub(crate) fn set_up(&mut self, index: u32, mtu: Option<u32>) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWLINK, 0).ifinfo(index, IFF_UP, IFF_UP);
        if let Some(mtu) = mtu {
            m.attr_u32(IFLA_MTU, mtu);
        }
        self.request(m)
    }

    /// `ip addr replace IP/PREFIX dev INDEX`.
    pub(crate) fn replace_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
        m.buf
            .extend_from_slice(&[AF_INET, prefix, 0, RT_SCOPE_UNIVERSE]);
        m.buf.extend_from_slice(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &ip.octets())
            .attr(IFA_ADDRESS, &ip.octets());
        self.request(m)
    }

    /// `ip route add default via GATEWAY`.
    pub(crate) fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
        m.buf.extend_from_slice(&[
            AF_INET,
            0, // dst_len: default
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        m.buf.extend_from_slice(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway.octets());
        self.request(m)
    }

    /// `ip link del INDEX`.
    pub(crate) fn delete_link(&mut self, index: u32) -> io::Result<()> {
        self.request(Message::new(RTM_DELLINK, 0).ifinfo(index, 0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_like_the_kernel_expects() {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE).ifinfo(7, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, "br0");
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        let b = m.finish(42);
        assert_eq!(b.len(), 16 + 16 + 8 + 16);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 42);
        assert_eq!(
            u16::from_ne_bytes(b[6..8].try_into().unwrap()),
            NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK
        );
        // IFLA_IFNAME "br0\0": length 8, no padding needed.
        assert_eq!(&b[32..40], &[8, 0, 3, 0, b'b', b'r', b'0', 0]);
        // IFLA_LINKINFO nests IFLA_INFO_KIND "bridge\0" (4 + 7, padded to 12).
        assert_eq!(u16::from_ne_bytes(b[40..42].try_into().unwrap()), 16);
        assert_eq!(u16::from_ne_bytes(b[44..46].try_into().unwrap()), 11);
    }

    #[test]
    fn acks_and_errors_are_read() {
        let ack = |seq: u32, code: i32| {
            let mut r = 36u32.to_ne_bytes().to_vec();
            r.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            r.extend_from_slice(&[0, 0]);
            r.extend_from_slice(&seq.to_ne_bytes());
            r.extend_from_slice(&[0; 4]);
            r.extend_from_slice(&code.to_ne_bytes());
            r.extend_from_slice(&[0; 16]);
            r
        };
        assert!(matches!(parse_ack(&ack(5, 0), 5), Some(Ok(()))));
        let e = parse_ack(&ack(5, -17), 5).unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(17));
        assert!(parse_ack(&ack(4, 0), 5).is_none());
        assert!(
            parse_ack(&[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 5)
                .unwrap()
                .is_err()
        );
    }
}
