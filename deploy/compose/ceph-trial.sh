#!/bin/bash
# A single-node Ceph RADOS Gateway for a TRIAL of the compose setup: one monitor, one
# OSD keeping its data in RAM (memstore: gone when the container stops), S3 with TLS
# on port 443. The same steps and settings as tests/scaleout/ceph.py (which the test
# suite runs); production uses a real Ceph cluster or any S3 service instead.
set -euo pipefail
root=/var/lib/ceph-trial
mkdir -p $root/{run,log,mon/ceph-a,osd,rgw/ceph-rgw.a}
fsid=$(cat /proc/sys/kernel/random/uuid)
cat > $root/ceph.conf <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
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
rgw frontends = beast ssl_endpoint=0.0.0.0:443 ssl_certificate=/etc/ssl/ecr/fullchain.pem ssl_private_key=/etc/ssl/ecr/privkey.pem
CONF
c="-c $root/ceph.conf"
ceph-authtool --create-keyring $root/mon.keyring --gen-key -n mon. --cap mon 'allow *'
monmaptool --create --fsid "$fsid" --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' $root/monmap
ceph-mon $c --mkfs -i a --monmap $root/monmap --keyring $root/mon.keyring
ceph-mon $c -f -i a &
uuid=$(cat /proc/sys/kernel/random/uuid)
id=$(ceph $c osd new "$uuid")
mkdir -p "$root/osd/ceph-$id"
ceph-osd $c -i "$id" --mkfs --osd-uuid "$uuid"
ceph-osd $c -f -i "$id" &
radosgw $c -f -n client.rgw.a &
until radosgw-admin $c -n client.rgw.a user info --uid=ecr >/dev/null 2>&1 || \
      radosgw-admin $c -n client.rgw.a user create --uid=ecr --display-name=ecr \
        --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null 2>&1; do sleep 1; done
echo "ceph trial object store ready"
wait -n
