"""Write test-country.mmdb, the MaxMind-format country database the gateway tests use.

Loopback addresses get countries so the tests can choose a country by choosing a source
address: 127.0.0.0/30 -> DE, 127.0.0.4/30 -> KP. Regenerate with
`pip install mmdb-writer netaddr && python3 make_country_mmdb.py`.
"""
from mmdb_writer import MMDBWriter
from netaddr import IPSet

w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country",
               languages=["en"], description="Gatehouse test country database")
w.insert_network(IPSet(["127.0.0.0/30"]), {"country": {"iso_code": "DE"}})
w.insert_network(IPSet(["127.0.0.4/30"]), {"country": {"iso_code": "KP"}})
w.to_db_file("test-country.mmdb")
