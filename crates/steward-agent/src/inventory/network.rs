//! Network interfaces from `/sys/class/net`, with their addresses.
//!
//! Every directory of `/sys/class/net` is an interface (the `bonding_masters` file is not): its MAC from `address`
//! (lower case; the all-zero address of loopback and of tunnels is reported as empty), `mtu` and `operstate`.
//!
//! Addresses are not in sysfs. On the running system (`root` is `/`) they come from `getifaddrs(3)`: every IPv4 and
//! IPv6 address in CIDR notation, the prefix length counted from the netmask; IPv4 alias labels (`eth0:1`) count for
//! their interface. Under a fixture root they come from the optional file [`FIXTURE_ADDRESSES`]
//! (`<root>/steward-fixture/addresses`), one `interface address/prefix` per line, `#` starting a comment.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use steward_protocol::NetworkInterface;

use super::{read_string, read_trimmed, read_u64, rooted};

/// Where a fixture root keeps the interface addresses, relative to the root.
pub const FIXTURE_ADDRESSES: &str = "steward-fixture/addresses";

pub(super) fn collect(root: &Path, live: bool) -> Vec<NetworkInterface> {
    let mut interfaces = interfaces(root);
    let mut add = |name: &str, cidr: String| {
        if let Some(interface) = interfaces.iter_mut().find(|interface| interface.name == name)
            && !interface.addresses.contains(&cidr)
        {
            interface.addresses.push(cidr);
        }
    };
    if live {
        live_addresses(&mut add);
    } else if let Some(text) = read_string(&rooted(root, FIXTURE_ADDRESSES)) {
        fixture_addresses(&text, &mut add);
    }
    interfaces
}

fn interfaces(root: &Path) -> Vec<NetworkInterface> {
    let dir = rooted(root, "sys/class/net");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(path = %dir.display(), %error, "network interfaces not readable");
            return Vec::new();
        }
    };
    let mut interfaces = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        // The entries are symlinks to the device directories; `is_dir` follows them.
        if !path.is_dir() {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else { continue };
        let mut mac = read_trimmed(&path.join("address")).unwrap_or_default();
        mac.make_ascii_lowercase();
        if mac.bytes().all(|b| b == b'0' || b == b':') {
            mac.clear();
        }
        interfaces.push(NetworkInterface {
            name,
            mac,
            mtu: read_u64(&path.join("mtu")).and_then(|mtu| u32::try_from(mtu).ok()).unwrap_or(0),
            state: read_trimmed(&path.join("operstate")).unwrap_or_default(),
            addresses: Vec::new(),
        });
    }
    interfaces
}

/// Formats an address and its netmask in CIDR notation, the prefix length being the netmask's leading ones.
pub(super) fn cidr(address: IpAddr, netmask: Option<IpAddr>) -> String {
    let prefix = match (address, netmask) {
        (IpAddr::V4(_), Some(IpAddr::V4(mask))) => u32::from(mask).leading_ones(),
        (IpAddr::V6(_), Some(IpAddr::V6(mask))) => u128::from(mask).leading_ones(),
        (IpAddr::V4(_), _) => 32,
        (IpAddr::V6(_), _) => 128,
    };
    format!("{address}/{prefix}")
}

/// Reads the fixture address file: `interface address/prefix` lines.
fn fixture_addresses(text: &str, add: &mut impl FnMut(&str, String)) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let mut words = line.split_whitespace();
        let (Some(name), Some(cidr)) = (words.next(), words.next()) else { continue };
        match parse_cidr(cidr) {
            Some(formatted) => add(name, formatted),
            None => tracing::debug!(line, "bad line in the fixture address file"),
        }
    }
}

/// Parses `address/prefix` and formats it canonically (IPv6 compressed); `None` when invalid.
fn parse_cidr(text: &str) -> Option<String> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then(|| format!("{address}/{prefix}"))
}

/// Reads the addresses of all interfaces from the kernel through `getifaddrs`.
fn live_addresses(add: &mut impl FnMut(&str, String)) {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid place for `getifaddrs` to store the list head.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "getifaddrs failed");
        return;
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list `getifaddrs` returned, which stays valid until `freeifaddrs`.
        let node = unsafe { &*cursor };
        cursor = node.ifa_next;
        if node.ifa_name.is_null() || node.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points to a socket address of the family it names.
        let Some(address) = (unsafe { socket_address(node.ifa_addr) }) else { continue };
        // SAFETY: `ifa_netmask` is null or points to a socket address like `ifa_addr`.
        let netmask = if node.ifa_netmask.is_null() { None } else { unsafe { socket_address(node.ifa_netmask) } };
        // SAFETY: `ifa_name` is a non-null, NUL-terminated interface name owned by the list.
        let name = unsafe { CStr::from_ptr(node.ifa_name) };
        let Ok(name) = name.to_str() else { continue };
        let name = name.split(':').next().unwrap_or(name);
        add(name, cidr(address, netmask));
    }
    // SAFETY: `head` came from a successful `getifaddrs` and is freed exactly once; no reference into it survives.
    unsafe { libc::freeifaddrs(head) };
}

/// Converts an IPv4 or IPv6 socket address; `None` for other families.
///
/// # Safety
/// `sockaddr` must point to a readable socket address whose size fits its `sa_family`.
unsafe fn socket_address(sockaddr: *const libc::sockaddr) -> Option<IpAddr> {
    // SAFETY: the caller guarantees a readable socket address; every one starts with the family.
    let family = unsafe { std::ptr::read_unaligned(std::ptr::addr_of!((*sockaddr).sa_family)) };
    match i32::from(family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a `sockaddr_in`.
            let sin = unsafe { std::ptr::read_unaligned(sockaddr.cast::<libc::sockaddr_in>()) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a `sockaddr_in6`.
            let sin6 = unsafe { std::ptr::read_unaligned(sockaddr.cast::<libc::sockaddr_in6>()) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cidr_from_netmask() {
        let v4 = |s: &str| IpAddr::V4(s.parse().expect("ipv4"));
        let v6 = |s: &str| IpAddr::V6(s.parse().expect("ipv6"));
        assert_eq!(cidr(v4("192.0.2.10"), Some(v4("255.255.255.0"))), "192.0.2.10/24");
        assert_eq!(cidr(v4("10.1.2.3"), Some(v4("255.255.240.0"))), "10.1.2.3/20");
        assert_eq!(cidr(v4("10.1.2.3"), None), "10.1.2.3/32");
        assert_eq!(cidr(v6("2001:db8::1"), Some(v6("ffff:ffff:ffff:ffff::"))), "2001:db8::1/64");
        assert_eq!(cidr(v6("fe80::1"), None), "fe80::1/128");
    }

    #[test]
    fn parses_fixture_addresses() {
        let mut seen = Vec::new();
        fixture_addresses(
            "# comment\neth0 192.0.2.10/24\neth0 2001:DB8:0:0::10/64 # trailing\nlo 127.0.0.1/8\n\
             eth0 bad/24\neth0 192.0.2.11/33\nlonely\n",
            &mut |name: &str, cidr: String| seen.push((name.to_owned(), cidr)),
        );
        let seen: Vec<(&str, &str)> = seen.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        assert_eq!(seen, [("eth0", "192.0.2.10/24"), ("eth0", "2001:db8::10/64"), ("lo", "127.0.0.1/8")]);
    }

    #[test]
    fn reads_sysfs_interfaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (name, mac, mtu, state) in
            [("lo", "00:00:00:00:00:00", "65536", "unknown"), ("eth0", "52:54:00:AB:cd:01", "1500", "up")]
        {
            let path = root.join("sys/class/net").join(name);
            std::fs::create_dir_all(&path).expect("mkdir");
            std::fs::write(path.join("address"), format!("{mac}\n")).expect("write");
            std::fs::write(path.join("mtu"), format!("{mtu}\n")).expect("write");
            std::fs::write(path.join("operstate"), format!("{state}\n")).expect("write");
        }
        std::fs::write(root.join("sys/class/net/bonding_masters"), "\n").expect("write");
        std::fs::create_dir_all(root.join("steward-fixture")).expect("mkdir");
        std::fs::write(
            root.join(FIXTURE_ADDRESSES),
            "eth0 192.0.2.10/24\neth0 192.0.2.10/24\nlo 127.0.0.1/8\nnope 10.0.0.1/8\n",
        )
        .expect("write");

        let mut interfaces = collect(root, false);
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            interfaces,
            [
                NetworkInterface {
                    name: "eth0".into(),
                    mac: "52:54:00:ab:cd:01".into(),
                    mtu: 1500,
                    state: "up".into(),
                    addresses: vec!["192.0.2.10/24".into()],
                },
                NetworkInterface {
                    name: "lo".into(),
                    mac: String::new(),
                    mtu: 65536,
                    state: "unknown".into(),
                    addresses: vec!["127.0.0.1/8".into()],
                },
            ]
        );
    }

    #[test]
    fn live_addresses_include_loopback() {
        let mut seen = Vec::new();
        live_addresses(&mut |name: &str, cidr: String| seen.push((name.to_owned(), cidr)));
        assert!(seen.iter().any(|(name, cidr)| name == "lo" && cidr == "127.0.0.1/8"), "{seen:?}");
    }
}
