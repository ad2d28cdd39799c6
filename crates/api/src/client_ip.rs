//! The client's IP address: the peer, or — only when the peer is a trusted proxy — the
//! right-most address of the configured header (`X-Forwarded-For` or RFC 7239 `Forwarded`)
//! that is not itself a trusted proxy.

use std::net::IpAddr;

use actix_web::HttpRequest;
use authd_ratelimit::IpGroup;
pub use authd_settings::ClientIpHeader;

use crate::ErrorCode;
use crate::{ApiError, AppState};

/// Trusted proxies and the header they write, parsed once.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
    header: ClientIpHeader,
}

impl Default for TrustedProxies {
    fn default() -> Self {
        Self {
            nets: Vec::new(),
            header: ClientIpHeader::XForwardedFor,
        }
    }
}

/// The `for=` address of one RFC 7239 `Forwarded` element: `None` for `unknown`, an
/// obfuscated identifier (`_hidden`) or anything else that is not an address. IPv6 comes in
/// brackets and either may carry a port (`"[2001:db8::1]:4711"`, `"192.0.2.1:80"`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
    })?;
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    value.parse().ok().or_else(|| {
        value
            .rsplit_once(':')?
            .0
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(IpAddr::V4)
    })
}

impl TrustedProxies {
    pub fn parse(list: &[String], header: ClientIpHeader) -> Self {
        Self {
            nets: list
                .iter()
                .filter_map(|p| {
                    p.parse::<ipnet::IpNet>()
                        .ok()
                        .or_else(|| p.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                })
                .collect(),
            header,
        }
    }

    pub fn header(&self) -> ClientIpHeader {
        self.header
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request with this peer and these values of the configured
    /// header (each value a comma-separated list of hops, oldest first).
    pub fn client(&self, peer: IpAddr, values: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<Option<IpAddr>> = values
            .iter()
            .flat_map(|h| h.split(','))
            .map(|hop| match self.header {
                ClientIpHeader::XForwardedFor => hop.trim().parse().ok(),
                ClientIpHeader::Forwarded => forwarded_for(hop),
            })
            .collect();
        // Walk from the nearest hop: past trusted proxies, to the first address that is not
        // one. A hop that is no address ends the walk: what lies left of it is unvouched for.
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => client = *ip,
                Some(ip) => return *ip,
                None => return client,
            }
        }
        client
    }
}

pub fn client_ip(state: &AppState, req: &HttpRequest) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let name = match state.trusted_proxies.header() {
        ClientIpHeader::XForwardedFor => "x-forwarded-for",
        ClientIpHeader::Forwarded => "forwarded",
    };
    let values: Vec<&str> = req
        .headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect();
    state.trusted_proxies.client(peer, &values)
}

/// The client's IP address as a handler argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl actix_web::FromRequest for ClientIp {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let ip = match req.app_data::<actix_web::web::Data<AppState>>() {
            Some(state) => client_ip(state, req),
            None => req
                .peer_addr()
                .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip()),
        };
        std::future::ready(Ok(Self(ip)))
    }
}

/// Takes one request from the client's budget for a group of unauthenticated routes:
/// 429 `TOO_MANY_REQUESTS` when it is spent. Answered from the RateLimiter's memory on this
/// thread (see `authd_ratelimit::Gate`); kept `async` so that every check of a handler reads
/// the same.
pub async fn ip_budget(
    state: &AppState,
    req: &HttpRequest,
    group: IpGroup,
) -> Result<(), ApiError> {
    let ip = client_ip(state, req);
    crate::error::limited(
        Ok(state.gate.ip_budget(group, ip)),
        ErrorCode::TooManyRequests,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(
            &["10.0.0.0/8".into(), "192.0.2.7".into()],
            ClientIpHeader::XForwardedFor,
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer cannot claim another address.
        assert_eq!(t.client(ip("203.0.113.9"), &["1.2.3.4"]), ip("203.0.113.9"));
        // A trusted peer: the right-most untrusted hop, past any chain of trusted proxies.
        assert_eq!(
            t.client(ip("10.1.1.1"), &["1.2.3.4, 198.51.100.5, 10.2.2.2"]),
            ip("198.51.100.5")
        );
        assert_eq!(
            t.client(ip("192.0.2.7"), &["1.2.3.4", "198.51.100.6"]),
            ip("198.51.100.6")
        );
        // No usable header: the peer.
        assert_eq!(t.client(ip("10.1.1.1"), &["garbage"]), ip("10.1.1.1"));
        // A hop that is no address ends the walk: nothing left of it is believed.
        assert_eq!(
            t.client(ip("10.1.1.1"), &["1.2.3.4, unknown, 10.2.2.2"]),
            ip("10.2.2.2")
        );
    }

    #[test]
    fn rfc_7239_forwarded_elements_are_read_like_forwarded_for() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()], ClientIpHeader::Forwarded);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let peer = ip("10.0.0.1");
        assert_eq!(
            t.client(peer, &["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            ip("192.0.2.60")
        );
        assert_eq!(
            t.client(peer, &[r#"for="[2001:db8:cafe::17]:4711", For=10.0.0.9"#]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            t.client(peer, &[r#"for="192.0.2.43:47011""#]),
            ip("192.0.2.43")
        );
        // Several headers are one list; the right-most untrusted hop counts.
        assert_eq!(
            t.client(peer, &["for=198.51.100.1", "for=198.51.100.2"]),
            ip("198.51.100.2")
        );
        // Obfuscated or unknown: the walk stops at the proxy.
        assert_eq!(t.client(peer, &["for=1.2.3.4, for=_hidden"]), peer);
        assert_eq!(t.client(peer, &["for=unknown"]), peer);
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            t.client(ip("203.0.113.9"), &["for=1.2.3.4"]),
            ip("203.0.113.9")
        );
    }
}
