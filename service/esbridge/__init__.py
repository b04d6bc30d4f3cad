"""esbridge: threshold checks as Elasticsearch queries, for Nagios, Icinga 2 and Prometheus."""

__version__ = "0.1.0"
