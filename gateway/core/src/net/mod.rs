//! Network addresses: CIDR tables and client-IP resolution.

pub mod cidr;
pub mod client_ip;

pub use cidr::{ip_to_u128, normalize_ip, Cidr, CidrError, IpAction, IpMatcher};
pub use client_ip::{ClientIpConfig, ClientIpResolver, ClientIpSource};
