//! The host's IPv4 routes, read from `/proc/net/route`, so that IPAM can skip
//! subnets that are in use already (docker0's 172.17/16, a VPN, a test's dummy
//! interface).

use std::fs;
use std::io;
use std::net::Ipv4Addr;

use crate::addr::Ipv4Net;

/// Every non-default IPv4 route of the current network namespace.
pub fn host_routes() -> io::Result<Vec<Ipv4Net>> {
    Ok(parse_proc_net_route(&fs::read_to_string(
        "/proc/net/route",
    )?))
}

/// Parses the table format of `/proc/net/route` (addresses in host byte order
/// hex). The default route is left out: it overlaps everything.
pub fn parse_proc_net_route(text: &str) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The file prints the kernel's big-endian words in host order.
        let dest = Ipv4Addr::from(u32::from_be(dest.to_le()));
        let mask = u32::from_be(mask.to_le());
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue;
        }
        out.push(Ipv4Net::route(dest, prefix));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let routes = parse_proc_net_route(text);
        let want: Vec<Ipv4Net> = vec![
            "192.0.2.0/24".parse().unwrap(),
            "172.17.0.0/16".parse().unwrap(),
        ];
        assert_eq!(routes, want);
    }
}
