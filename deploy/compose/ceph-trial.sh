#!/bin/bash
# A single-node Ceph RADOS Gateway for a TRIAL of the compose setup: one monitor, one
# OSD keeping its data in RAM (memstore: gone when the container stops), S3 with TLS
# on port 443. The same steps and settings as tests/scaleout/ceph.py (which the test
# suite runs); production uses a real Ceph cluster or any S3 service instead.
# Settings (environment; the defaults are the container's): CEPH_TRIAL_ROOT, MON_PORTS
# ("V2 V1"), RGW_ENDPOINT (HOST:PORT), TLS_CERT, TLS_KEY, S3_ACCESS_KEY, S3_SECRET_KEY.
set -euo pipefail
root=${CEPH_TRIAL_ROOT:-/var/lib/ceph-trial}
read -r mon_v2 mon_v1 <<< "${MON_PORTS:-3300 6789}"
mons="[v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]"
rgw=${RGW_ENDPOINT:-0.0.0.0:443}
cert=${TLS_CERT:-/etc/ssl/ecr/fullchain.pem}
key=${TLS_KEY:-/etc/ssl/ecr/privkey.pem}
stop() {  # the gateway, then the OSD, then the monitor
  for pid in $rgw_pid $osd_pid $mon_pid; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  exit 0
}
mon_pid="" osd_pid="" rgw_pid=""
trap stop TERM INT
mkdir -p $root/{run,log,mon/ceph-a,osd,rgw/ceph-rgw.a}
fsid=$(cat /proc/sys/kernel/random/uuid)
cat > $root/ceph.conf <<CONF
[global]
fsid = $fsid
mon host = $mons
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
paxos propose interval = 0.05
paxos min wait = 0.01
mon data avail warn = 2
mon data avail crit = 1
run dir = $root/run
log file = $root/log/\$name.log
admin socket = $root/run/\$name.asok
pid file = $root/run/\$name.pid
mon data = $root/mon/\$cluster-\$id
osd data = $root/osd/\$cluster-\$id
rgw data = $root/rgw/\$cluster-\$id

[client.rgw.a]
rgw frontends = beast ssl_endpoint=$rgw ssl_certificate=$cert ssl_private_key=$key
CONF
c="-c $root/ceph.conf"
ceph-authtool --create-keyring $root/mon.keyring --gen-key -n mon. --cap mon 'allow *'
monmaptool --create --fsid "$fsid" --addv a "$mons" $root/monmap
ceph-mon $c --mkfs -i a --monmap $root/monmap --keyring $root/mon.keyring
ceph-mon $c -f -i a &
mon_pid=$!
uuid=$(cat /proc/sys/kernel/random/uuid)
id=$(ceph $c osd new "$uuid")
mkdir -p "$root/osd/ceph-$id"
ceph-osd $c -i "$id" --mkfs --osd-uuid "$uuid"
ceph-osd $c -f -i "$id" &
osd_pid=$!
radosgw $c -f -n client.rgw.a &
rgw_pid=$!
until radosgw-admin $c -n client.rgw.a user info --uid=ecr >/dev/null 2>&1 || \
      radosgw-admin $c -n client.rgw.a user create --uid=ecr --display-name=ecr \
        --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null 2>&1; do sleep 1; done
echo "ceph trial object store ready"
wait -n || true
stop
