//! The client's IP address: the peer, or — only when the peer is a trusted proxy — the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy.

use std::net::IpAddr;

use actix_web::HttpRequest;
use authd_ratelimit::{IpBudget, IpGroup, LimitError};

use crate::{ApiError, AppState};

/// Trusted proxies, parsed once.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn parse(list: &[String]) -> Self {
        Self(
            list.iter()
                .filter_map(|p| {
                    p.parse::<ipnet::IpNet>()
                        .ok()
                        .or_else(|| p.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                })
                .collect(),
        )
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request with this peer and `X-Forwarded-For` header values.
    pub fn client(&self, peer: IpAddr, forwarded: &[&str]) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded
            .iter()
            .flat_map(|h| h.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect();
        hops.iter()
            .rev()
            .copied()
            .find(|ip| !self.trusts(*ip))
            .unwrap_or(peer)
    }
}

pub fn client_ip(state: &AppState, req: &HttpRequest) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    state.trusted_proxies.client(peer, &forwarded)
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
/// 429 `TOO_MANY_REQUESTS` when it is spent.
pub async fn ip_budget(
    state: &AppState,
    req: &HttpRequest,
    group: IpGroup,
) -> Result<(), ApiError> {
    let ip = client_ip(state, req);
    match state.limiter.send(IpBudget { group, ip }).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(LimitError::Denied(wait))) => Err(ApiError::too_many("TOO_MANY_REQUESTS", wait)),
        Ok(Err(LimitError::Store(e))) => Err(e.into()),
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]);
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
    }
}
