//! The client network an attempt comes from, the unit of the guessing backoffs and of the
//! per-IP budgets.

/// The client network an attempt comes from: an IPv4 address, or the /64 of an IPv6 address
/// (one subscriber usually holds a whole /64, so single IPv6 addresses would be free to
/// rotate). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network(std::net::IpAddr);

impl Network {
    pub fn of(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(v4) => Self(v4.into()),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(v4.into()),
                None => {
                    let bits = u128::from(v6) & (u128::MAX << 64);
                    Self(std::net::Ipv6Addr::from(bits).into())
                }
            },
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            std::net::IpAddr::V4(v4) => write!(f, "{v4}"),
            std::net::IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let of = |s: &str| Network::of(s.parse().unwrap());
        assert_eq!(of("2001:db8:1:2:aaaa::1"), of("2001:db8:1:2:ffff::9"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_ne!(of("192.0.2.1"), of("192.0.2.2"));
        assert_eq!(of("::ffff:192.0.2.1"), of("192.0.2.1"));
        assert_eq!(of("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
    }
}
