DROP TABLE IF EXISTS tailnet_node_keys;
DROP TABLE IF EXISTS tailnet_tunnels;
DROP TABLE IF EXISTS tailnet_peers;
DROP TABLE IF EXISTS tailnet_coordinators;
DROP TABLE IF EXISTS site_configs;
DROP TABLE IF EXISTS replicas;
