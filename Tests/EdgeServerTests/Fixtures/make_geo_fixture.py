"""Writes geo-test.mmdb, the MaxMind DB the server tests read (see README.md). Run from this
directory with the test venv's Python: ../../../.build/venv/bin/python make_geo_fixture.py"""
from mmdb_writer import MMDBWriter
from netaddr import IPSet

w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Edge-Test-Country",
               description="edge server tests")
w.insert_network(IPSet(["192.0.2.10/32"]), {"country": {"iso_code": "US"}})
w.insert_network(IPSet(["192.0.2.20/32"]), {"country": {"iso_code": "DE"}})
w.insert_network(IPSet(["192.0.2.30/32"]), {"continent": {"code": "EU"}})          # no country
w.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "GB"}})      # the tests' proxies
w.insert_network(IPSet(["203.0.113.0/24"]), {"registered_country": {"iso_code": "JP"}})
w.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "FR"}})
w.to_db_file("geo-test.mmdb")
