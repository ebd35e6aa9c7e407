#!/bin/sh
# mkpkg.sh runs in the lab's chroot with the build directory at /work:
# makes the signing key if there is none, turns each /work/pkgs/NAME
# (root/ holding the files, PKGINFO) into a signed .pkg.tar.zst as makepkg
# would (.PKGINFO, .MTREE, zstd), and builds the signed repository
# database with repo-add.
set -eu
export LC_ALL=C GNUPGHOME=/work/gnupg
repo=$1
mkdir -p /work/repo /work/keys
chmod 700 /work/gnupg 2>/dev/null || mkdir -m 700 -p /work/gnupg
if ! gpg --batch --list-secret-keys 2>/dev/null | grep -q sec; then
	gpg --batch --passphrase '' --quick-gen-key "paczfs lab repository <lab@paczfs.invalid>" ed25519 sign never
fi
fpr=$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1=="fpr"{print $10; exit}')
gpg --batch --export "$fpr" > /work/keys/$repo.gpg
echo "$fpr:4:" > /work/keys/$repo-trusted
: > /work/keys/$repo-revoked
for d in /work/pkgs/*/; do
	name=$(basename "$d")
	ver=$(sed -n 's/^pkgver = //p' "$d/PKGINFO")
	arch=$(sed -n 's/^arch = //p' "$d/PKGINFO")
	out=/work/repo/$name-$ver-$arch.pkg.tar.zst
	[ -f "$out" ] && [ -f "$out.sig" ] && continue
	cd "$d/root"
	for top in bin sbin lib lib64; do
		if [ -d "$top" ] && [ ! -L "$top" ]; then
			mkdir -p "usr/$top" && cp -a "$top/." "usr/$top/" && rm -rf "$top"
		fi
	done
	rm -rf usr/share/doc usr/share/man usr/share/info usr/share/lintian
	cp "$d/PKGINFO" .PKGINFO
	# What the package's maintainer script would have made (see the table).
	while read -r pkg target source; do
		case $pkg in ''|'#'*) continue;; esac
		[ "$pkg" = "$name" ] || continue
		[ -f "$source" ] || { echo "mkpkg: $name has no $source for $target" >&2; exit 1; }
		mkdir -p "$(dirname "$target")"
		cp -p "$source" "$target"
		echo "backup = $target" >> .PKGINFO
	done < /work/maintscript-files
	set -- *
	[ "$1" = '*' ] && set --
	bsdtar -czf .MTREE --format=mtree --options='!all,use-set,type,uid,gid,mode,time,size,md5,sha256,link' .PKGINFO "$@"
	bsdtar -cf - .MTREE .PKGINFO "$@" | zstd -q -T0 -c > "$out.tmp"
	mv "$out.tmp" "$out"
	gpg --batch --yes --detach-sign --no-armor -u "$fpr" -o "$out.sig" "$out"
	cd /work
done
rm -f /work/repo/$repo.db* /work/repo/$repo.files*
repo-add -q --sign --key "$fpr" /work/repo/$repo.db.tar.zst /work/repo/*.pkg.tar.zst
echo "$fpr" > /work/keys/fingerprint
