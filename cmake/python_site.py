"""Prints where `cmake --install` puts the Python package, relative to the install prefix
given as argv[1], so that Debian's /usr/bin/python3 imports it without PYTHONPATH: the
interpreter's own site directory for /usr/local (lib/python3.X/dist-packages), Debian's
lib/python3/dist-packages for /usr, and lib/python3.X/site-packages under any other prefix
(add that to PYTHONPATH)."""
import os
import sys
import sysconfig

prefix = os.path.normpath(sys.argv[1])
site = sysconfig.get_path("purelib")  # Debian: /usr/local/lib/python3.X/dist-packages
if os.path.commonpath([site, prefix]) == prefix and site in sys.path:
    print(os.path.relpath(site, prefix))
elif prefix == os.path.normpath(sys.base_prefix) and "/usr/lib/python3/dist-packages" in sys.path:
    print("lib/python3/dist-packages")
else:
    print(f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages")
