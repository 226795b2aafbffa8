//! Wire constants shared by the XDP program and the frame rewriter of `force-https-proto`:
//! Ethernet types, header lengths, the TCP protocol number and TCP flag bits.

/// Ethernet header length (no VLAN tag).
pub const ETH_HLEN: usize = 14;
/// Length of one 802.1Q tag.
pub const VLAN_HLEN: usize = 4;
/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IPv4 header length without options.
pub const IPV4_HLEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HLEN: usize = 40;
/// TCP header length without options.
pub const TCP_HLEN: usize = 20;

/// TCP flag FIN.
pub const TH_FIN: u8 = 0x01;
/// TCP flag SYN.
pub const TH_SYN: u8 = 0x02;
/// TCP flag RST.
pub const TH_RST: u8 = 0x04;
/// TCP flag PSH.
pub const TH_PSH: u8 = 0x08;
/// TCP flag ACK.
pub const TH_ACK: u8 = 0x10;
/// TCP flag URG.
pub const TH_URG: u8 = 0x20;
