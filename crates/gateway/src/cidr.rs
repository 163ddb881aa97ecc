//! IP address ranges (`10.0.0.0/8`, `::1`), as `ip-restriction` and
//! `[gateway] trusted_ips` take them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a text is not an address range. Its message names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before any `/` is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address or CIDR range: bad address")]
    Address(String),
    /// The part after `/` is not a prefix length in digits.
    #[error("{0:?} is not an IP address or CIDR range: bad prefix length")]
    Prefix(String),
    /// The prefix length is longer than the address (32 or 128 bits).
    #[error("{text:?} is not an IP address or CIDR range: the prefix length is over {max}")]
    PrefixTooLong {
        /// The text as given.
        text: String,
        /// The address's length in bits.
        max: u8,
    },
}

/// An address range: a network address (host bits cleared) and a prefix
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    /// An IPv4 network and its prefix length.
    V4(u32, u8),
    /// An IPv6 network and its prefix length.
    V6(u128, u8),
}

impl Cidr {
    /// Parses `1.2.3.4`, `1.2.3.0/24`, `::1` or `fe80::/10`.
    ///
    /// ```
    /// use frameway_gateway::cidr::Cidr;
    ///
    /// let net = Cidr::parse("10.0.0.0/8").unwrap();
    /// assert!(net.contains("10.1.2.3".parse().unwrap()));
    /// assert!(Cidr::parse("10.0.0.0/33").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would also take "+8".
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let p: u8 = p.parse().map_err(|_| CidrError::Prefix(text.to_owned()))?;
                if p > max {
                    return Err(CidrError::PrefixTooLong {
                        text: text.to_owned(),
                        max,
                    });
                }
                p
            }
            Some(_) => return Err(CidrError::Prefix(text.to_owned())),
        };
        Ok(Cidr::new(addr, prefix))
    }

    fn new(addr: IpAddr, prefix: u8) -> Cidr {
        match addr {
            IpAddr::V4(a) => Cidr::V4(u32::from(a) & mask32(prefix), prefix),
            // A range inside ::ffff:0:0/96 is written for IPv4 clients seen
            // through an IPv6 socket: it is that IPv4 range.
            IpAddr::V6(a) if prefix >= 96 && a.to_ipv4_mapped().is_some() => {
                let v4 = a.to_ipv4_mapped().expect("mapped");
                Cidr::new(IpAddr::V4(v4), prefix - 96)
            }
            IpAddr::V6(a) => Cidr::V6(u128::from(a) & mask128(prefix), prefix),
        }
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip.to_canonical()) {
            (Cidr::V4(net, prefix), IpAddr::V4(a)) => u32::from(a) & mask32(*prefix) == *net,
            (Cidr::V6(net, prefix), IpAddr::V6(a)) => u128::from(a) & mask128(*prefix) == *net,
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Cidr::V4(net, prefix) => write!(f, "{}/{prefix}", Ipv4Addr::from(net)),
            Cidr::V6(net, prefix) => write!(f, "{}/{prefix}", Ipv6Addr::from(net)),
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> String {
        Cidr::parse(s).unwrap().to_string()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_parse() {
        assert_eq!(cidr("1.2.3.4"), "1.2.3.4/32");
        assert_eq!(cidr("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(cidr("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(cidr("::1"), "::1/128");
        assert_eq!(cidr("2001:db8::ff/32"), "2001:db8::/32");
        assert_eq!(cidr("::/0"), "::/0");
        assert_eq!(cidr("::ffff:10.0.0.0/104"), "10.0.0.0/8");
        assert_eq!(cidr("::ffff:0:0/96"), "0.0.0.0/0");
        // Below /96 the range is more than the mapped block: kept as IPv6.
        assert_eq!(cidr("::ffff:0:0/95"), "::fffe:0:0/95");
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4/",
            "1.2.3.4/33",
            "1.2.3.4/+8",
            "1.2.3.4/-1",
            "1.2.3.4/08a",
            "::1/129",
            "::1/1000",
            "1.2.3.4/8/8",
            "example.com",
            "fe80::1%eth0",
            "01.2.3.4",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn errors_say_which_part_is_wrong_and_name_the_text() {
        assert_eq!(
            Cidr::parse("1.2.3"),
            Err(CidrError::Address("1.2.3".into()))
        );
        assert_eq!(
            Cidr::parse("1.2.3.4/+8"),
            Err(CidrError::Prefix("1.2.3.4/+8".into()))
        );
        let long = Cidr::parse("::1/129").unwrap_err();
        assert_eq!(
            long,
            CidrError::PrefixTooLong {
                text: "::1/129".into(),
                max: 128
            }
        );
        assert_eq!(
            long.to_string(),
            "\"::1/129\" is not an IP address or CIDR range: the prefix length is over 128"
        );
    }

    #[test]
    fn containment() {
        let net = Cidr::parse("192.168.0.0/16").unwrap();
        assert!(net.contains(ip("192.168.0.0")));
        assert!(net.contains(ip("192.168.255.255")));
        assert!(!net.contains(ip("192.169.0.0")));
        assert!(!net.contains(ip("::1")));
        assert!(net.contains(ip("::ffff:192.168.1.1")));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("8.8.8.8")));
        assert!(!all4.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let host = Cidr::parse("::1").unwrap();
        assert!(host.contains(ip("::1")));
        assert!(!host.contains(ip("::2")));
        let odd = Cidr::parse("10.0.0.0/9").unwrap();
        assert!(odd.contains(ip("10.127.255.255")));
        assert!(!odd.contains(ip("10.128.0.0")));
    }
}
