"""Kernel memory of the sockets `ss -tmnH` lists on stdin (skmem r + w + f: received, queued to send, reserved),
in KiB per socket, for benches/idle-ab.sh: the kernel's share, which a process's RSS does not include."""
import re
import sys

total = count = 0
for line in sys.stdin:
    m = re.search(r"skmem:\((.*?)\)", line)
    if m:
        fields = dict(re.findall(r"([a-z]+)(\d+)", m.group(1)))
        total += sum(int(fields.get(k, 0)) for k in ("r", "w", "f"))
        count += 1
print(f"kernel socket buffers (ss -m r+w+f): {total / 1024 / max(count, 1):.2f} KiB per socket over {count} sockets")
