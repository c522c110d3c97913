"""The DNS response codes the GTM sends, as plain ints for the header's low 4 bits.

The one place they are defined (values from dnspython); ``LABELS`` names them in metrics.
"""

from __future__ import annotations

import dns.rcode

NOERROR = int(dns.rcode.NOERROR)
FORMERR = int(dns.rcode.FORMERR)
SERVFAIL = int(dns.rcode.SERVFAIL)
NXDOMAIN = int(dns.rcode.NXDOMAIN)
NOTIMP = int(dns.rcode.NOTIMP)
REFUSED = int(dns.rcode.REFUSED)
NOTAUTH = int(dns.rcode.NOTAUTH)
#: BADVERS (16) does not fit the header: its high 8 bits go in the OPT record (RFC 6891 6.1.3)
BADVERS_HIGH = int(dns.rcode.BADVERS) >> 4

#: metric label of each header rcode we send
LABELS: dict[int, str] = {
    code: dns.rcode.Rcode(code).name
    for code in (NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH)
}
