//! The network configuration, read-only: interfaces (as the inventory reads them), the main routing table from
//! `/proc/net/route` and `/proc/net/ipv6_route`, and the resolver's `/etc/resolv.conf`.
//!
//! `/proc/net/route` prints each IPv4 address as the hexadecimal value of a network-order 32-bit word read in
//! the machine's own byte order, so the address's bytes are that word's bytes in native order. `/proc/net/
//! ipv6_route` prints addresses as 32 hex digits in network order. It lists every table, so local, reject,
//! cached and multicast routes are left out: what remains is what `ip -6 route` shows for the main table.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use steward_protocol::system_admin::{DnsConfiguration, NetworkConfiguration, Route};

const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;
const RTF_CACHE: u32 = 0x0100_0000;
const RTF_LOCAL: u32 = 0x8000_0000;

/// The network configuration of the system under `root` (`/` for the running one).
pub fn collect(root: &Path) -> NetworkConfiguration {
    let read = |relative: &str| std::fs::read_to_string(root.join(relative)).unwrap_or_default();
    let mut routes = parse_ipv4_routes(&read("proc/net/route"));
    routes.extend(parse_ipv6_routes(&read("proc/net/ipv6_route")));
    let interfaces = crate::inventory::interfaces(root);
    NetworkConfiguration { interfaces, routes, dns: parse_resolv_conf(&read("etc/resolv.conf")) }
}

/// The routes of `/proc/net/route` text that are up.
pub fn parse_ipv4_routes(text: &str) -> Vec<Route> {
    let mut routes = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [interface, destination, gateway, flags, _refcnt, _use, metric, mask, ..] = fields[..] else { continue };
        let hex = |text: &str| u32::from_str_radix(text, 16).ok();
        let (Some(destination), Some(gateway), Some(flags), Some(mask)) =
            (hex(destination), hex(gateway), hex(flags), hex(mask))
        else {
            continue;
        };
        if flags & RTF_UP == 0 {
            continue;
        }
        let address = |word: u32| Ipv4Addr::from(word.to_ne_bytes());
        let prefix = u32::from_be_bytes(mask.to_ne_bytes()).leading_ones();
        routes.push(Route {
            family: "inet".into(),
            destination: format!("{}/{prefix}", address(destination)),
            gateway: (flags & RTF_GATEWAY != 0).then(|| address(gateway).to_string()),
            interface: interface.to_string(),
            metric: metric.parse().unwrap_or(0),
        });
    }
    routes
}

/// The main-table routes of `/proc/net/ipv6_route` text.
pub fn parse_ipv6_routes(text: &str) -> Vec<Route> {
    let mut routes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [destination, prefix, _source, _source_prefix, next_hop, metric, _refcnt, _use, flags, interface] =
            fields[..]
        else {
            continue;
        };
        let (Some(destination), Some(prefix), Some(next_hop), Some(metric), Some(flags)) = (
            ipv6(destination),
            u8::from_str_radix(prefix, 16).ok(),
            ipv6(next_hop),
            u32::from_str_radix(metric, 16).ok(),
            u32::from_str_radix(flags, 16).ok(),
        ) else {
            continue;
        };
        if flags & RTF_UP == 0 || flags & (RTF_REJECT | RTF_CACHE | RTF_LOCAL) != 0 || destination.is_multicast() {
            continue;
        }
        routes.push(Route {
            family: "inet6".into(),
            destination: format!("{destination}/{prefix}"),
            gateway: (flags & RTF_GATEWAY != 0 && !next_hop.is_unspecified()).then(|| next_hop.to_string()),
            interface: interface.to_string(),
            metric,
        });
    }
    routes
}

fn ipv6(hex: &str) -> Option<Ipv6Addr> {
    (hex.len() == 32).then_some(())?;
    u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
}

/// `nameserver` and `search` (or `domain`) lines of `resolv.conf` text; the last `search`/`domain` line wins,
/// as in the resolver.
pub fn parse_resolv_conf(text: &str) -> DnsConfiguration {
    let mut dns = DnsConfiguration::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => dns.search = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(routes: &[Route]) -> Vec<(String, Option<String>, String, u32)> {
        routes
            .iter()
            .map(|route| (route.destination.clone(), route.gateway.clone(), route.interface.clone(), route.metric))
            .collect()
    }

    #[test]
    fn ipv4_routes() {
        // Little-endian words, as an x86 or arm64 kernel prints them.
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth1\t0000A8C0\t00000000\t0000\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            garbage line\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                summary(&parse_ipv4_routes(text)),
                [
                    ("0.0.0.0/0".into(), Some("192.0.2.1".into()), "eth0".into(), 100),
                    ("192.0.2.0/24".into(), None, "eth0".into(), 0),
                ]
            );
        }
        assert!(parse_ipv4_routes("Iface\n").is_empty());
    }

    #[test]
    fn ipv6_routes_of_the_main_table() {
        let text = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
short line
";
        assert_eq!(
            summary(&parse_ipv6_routes(text)),
            [
                ("fd00::/64".into(), None, "eth0".into(), 256),
                ("fe80::/64".into(), None, "eth0".into(), 256),
                ("::/0".into(), Some("fd00::1".into()), "eth0".into(), 1024),
            ]
        );
    }

    #[test]
    fn resolver_configuration() {
        let text = "# generated\nnameserver 192.0.2.53\nnameserver 2001:db8::53 # second\ndomain old.example\n\
            search example.com corp.example\noptions ndots:2\n;nameserver 10.0.0.1\n";
        let dns = parse_resolv_conf(text);
        assert_eq!(dns.nameservers, ["192.0.2.53", "2001:db8::53"]);
        assert_eq!(dns.search, ["example.com", "corp.example"]);
        assert_eq!(parse_resolv_conf(""), DnsConfiguration::default());
    }

    #[test]
    fn the_running_system_has_loopback() {
        let config = collect(Path::new("/"));
        let lo = config.interfaces.iter().find(|interface| interface.name == "lo").expect("lo");
        assert!(lo.addresses.iter().any(|address| address == "127.0.0.1/8"), "{lo:?}");
    }
}
