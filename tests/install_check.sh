#!/bin/sh
# Install into a scratch DESTDIR, build examples/count_modules.c against the
# installed pkg-config file, run it on a spec vector, and check that the
# shared library pulls in neither libyaml nor OpenBLAS.
#   sh tests/install_check.sh BUILD_DIR
set -u
BUILD=${1:-build}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
pass=0
fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
notok() { echo "not ok - $1"; fail=$((fail + 1)); }

if make --no-print-directory -s BUILD="$BUILD" install DESTDIR="$dest" PREFIX=/usr >"$dest/log" 2>&1; then
    ok "make install"
else
    notok "make install"; cat "$dest/log"
fi
for f in usr/include/lora.h usr/include/lora_errors.h usr/include/lora_ops.h usr/lib/liblora.a usr/lib/liblora-ops.a \
         usr/lib/pkgconfig/liblora.pc usr/lib/pkgconfig/liblora-ops.pc; do
    if [ -e "$dest/$f" ]; then ok "installed $f"; else notok "installed $f"; fi
done
for t in lora-info lora-verify lora-convert lora-merge lora-quantize lora-prune; do
    if [ -x "$dest/usr/bin/$t" ] && [ -f "$dest/usr/share/man/man1/$t.1" ]; then ok "installed $t and its man page"; else
        notok "installed $t and its man page"; fi
done
soname=$(objdump -p "$dest/usr/lib/liblora.so" 2>/dev/null | awk '/SONAME/ {print $2}')
if [ "$soname" = "liblora.so.0" ]; then ok "soname $soname"; else notok "soname is '$soname'"; fi
if ldd "$dest/usr/lib/liblora.so" | grep -E -q 'libyaml|openblas|lapack|jansson'; then
    notok "liblora.so links only xxhash, zlib and libc"; ldd "$dest/usr/lib/liblora.so"
else
    ok "liblora.so links only xxhash, zlib and libc"
fi
flags=$(PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$dest/usr/lib/pkgconfig" pkg-config --cflags --libs liblora)
if cc examples/count_modules.c $flags -o "$dest/count_modules" 2>"$dest/log"; then
    ok "example builds with pkg-config ($flags)"
else
    notok "example builds with pkg-config"; cat "$dest/log"
fi
vector=$(ls spec/vectors/valid/*.lora 2>/dev/null | head -n 1)
if [ -n "$vector" ] && out=$(LD_LIBRARY_PATH="$dest/usr/lib" "$dest/count_modules" "$vector") &&
   echo "$out" | grep -q '^[0-9]* modules$'; then
    ok "example opens $vector: $out"
else
    notok "example opens a valid vector"
fi
echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
