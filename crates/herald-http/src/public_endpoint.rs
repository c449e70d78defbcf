//! Keeps device-supplied URLs away from private networks.
//!
//! A UnifiedPush or Web Push registration hands herald a URL that herald will
//! POST to. Unchecked, anyone who can register a device could make herald
//! call its own admin port, a cloud metadata service (169.254.169.254) or any
//! host on the operator's LAN. So an endpoint must be `https` on a public
//! address, checked twice: at registration (scheme, literal address, and the
//! addresses the name resolves to now), and at every connection, through a
//! resolver that drops non-public addresses — a name may resolve elsewhere
//! later (DNS rebinding). `allow_private_endpoints` turns this off, for
//! self-hosters whose distributor lives on their own network, and for tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Longest endpoint URL accepted (ntfy's are about 40 bytes; Mozilla's about 200).
pub const MAX_ENDPOINT_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("is not a valid URL: {0}")]
    Malformed(String),
    #[error("must be an https:// URL")]
    NotHttps,
    #[error("must not carry a user name or password")]
    HasCredentials,
    #[error("points to a non-public address ({0}); set allow_private_endpoints to permit it")]
    PrivateAddress(IpAddr),
    #[error("names a local host ({0}); set allow_private_endpoints to permit it")]
    LocalName(String),
    #[error("host {host} does not resolve: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// Whether `ip` is reachable on the public Internet: not loopback, private,
/// link-local, shared (CGNAT), multicast, documentation, benchmarking or
/// reserved space, including IPv4 embedded in IPv6.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0                                   // "this network"
        || (a == 100 && (64..128).contains(&b))     // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0)           // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))       // benchmarking, RFC 2544
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00               // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80               // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0               // site-local (deprecated), fec0::/10
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x2001 && ip.segments()[1] == 0     // Teredo tunnels
        || (first == 0x0100 && ip.segments()[1..4] == [0, 0, 0])) // discard-only
}

/// IPv4 carried inside IPv6: mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96)
/// and 6to4 (2002::/16) all lead to the embedded IPv4 host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(from(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(from(s[1], s[2]));
    }
    None
}

/// Checks an endpoint URL without network access: its form, its scheme, and
/// a literal or obviously local host.
pub fn check_url(endpoint: &str, allow_private: bool) -> Result<Url, EndpointError> {
    if endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(EndpointError::Malformed(format!(
            "{} bytes long, at most {MAX_ENDPOINT_BYTES} allowed",
            endpoint.len()
        )));
    }
    let url = Url::parse(endpoint).map_err(|e| EndpointError::Malformed(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(EndpointError::NotHttps),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::HasCredentials);
    }
    let host = url
        .host()
        .ok_or_else(|| EndpointError::Malformed("no host".into()))?;
    if allow_private {
        return Ok(url);
    }
    match host {
        Host::Ipv4(v4) if !is_public_v4(v4) => Err(EndpointError::PrivateAddress(v4.into())),
        Host::Ipv6(v6) if !is_public_v6(v6) => Err(EndpointError::PrivateAddress(v6.into())),
        Host::Domain(name) if is_local_name(name) => Err(EndpointError::LocalName(name.into())),
        _ => Ok(url),
    }
}

/// Names that resolve to this machine or the local network by convention.
pub fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".local")
        || name.ends_with(".internal")
        || !name.contains('.')
}

/// The registration-time check: `check_url`, then the addresses the host
/// resolves to now must all be public.
pub async fn check_endpoint(endpoint: &str, allow_private: bool) -> Result<Url, EndpointError> {
    let url = check_url(endpoint, allow_private)?;
    if allow_private {
        return Ok(url);
    }
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| EndpointError::Unresolvable {
                host: name.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(EndpointError::PrivateAddress(bad.ip()));
        }
    }
    Ok(url)
}

/// A resolver for reqwest that only ever returns public addresses.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(
                !is_public(private.parse().unwrap()),
                "{private} taken as public"
            );
        }
        for public in [
            "1.1.1.1",
            "93.184.215.14",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(
                is_public(public.parse().unwrap()),
                "{public} taken as private"
            );
        }
    }

    #[test]
    fn refuses_non_https_credentials_and_local_hosts() {
        let refuse = |u: &str| check_url(u, false).unwrap_err();
        assert_eq!(refuse("http://push.example.com/x"), EndpointError::NotHttps);
        assert_eq!(refuse("ftp://push.example.com/x"), EndpointError::NotHttps);
        assert_eq!(
            refuse("https://u:p@push.example.com/x"),
            EndpointError::HasCredentials
        );
        assert!(matches!(
            refuse("https://127.0.0.1/x"),
            EndpointError::PrivateAddress(_)
        ));
        assert!(matches!(
            refuse("https://[::1]:8443/x"),
            EndpointError::PrivateAddress(_)
        ));
        assert!(matches!(
            refuse("https://[::ffff:192.168.0.1]/x"),
            EndpointError::PrivateAddress(_)
        ));
        assert!(matches!(
            refuse("https://localhost/x"),
            EndpointError::LocalName(_)
        ));
        assert!(matches!(
            refuse("https://printer.local/x"),
            EndpointError::LocalName(_)
        ));
        assert!(matches!(
            refuse("https://intranet/x"),
            EndpointError::LocalName(_)
        ));
        assert!(matches!(refuse("not a url"), EndpointError::Malformed(_)));
        assert!(matches!(
            refuse(&format!("https://a.example/{}", "x".repeat(3000))),
            EndpointError::Malformed(_)
        ));
        assert!(check_url("https://ntfy.sh/upAbCdEfGhIjKl", false).is_ok());
        assert!(check_url("https://1.1.1.1/x", false).is_ok());
    }

    #[test]
    fn allow_private_permits_local_http() {
        assert!(check_url("http://127.0.0.1:8080/up", true).is_ok());
        assert!(check_url("https://localhost/up", true).is_ok());
        assert_eq!(
            check_url("ftp://127.0.0.1/", true).unwrap_err(),
            EndpointError::NotHttps
        );
    }

    #[tokio::test]
    async fn registration_check_resolves_names() {
        // localhost resolves through /etc/hosts, without any network.
        let err = check_endpoint("https://localhost./x", false)
            .await
            .unwrap_err();
        assert!(matches!(err, EndpointError::LocalName(_)), "{err}");
        assert!(check_endpoint("http://localhost:1/x", true).await.is_ok());
    }

    #[tokio::test]
    async fn the_connect_time_resolver_drops_private_addresses() {
        let name: Name = "localhost".parse().unwrap();
        let err = match PublicOnlyResolver.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(err.to_string().contains("no public address"), "{err}");
    }
}
