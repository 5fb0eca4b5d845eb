/*
 * fixtures.h - what the programs know about the /fixtures tree that
 * tests/test_conformance.py builds into the rootfs (FIXTURES there is the
 * source of truth; change both together).
 *
 *   /fixtures/file.txt        FILE_TXT (37 bytes), mode 0644, mtime FILE_MTIME_*
 *   /fixtures/empty           empty, 0644
 *   /fixtures/secret          "top secret\n", 0600
 *   /fixtures/script.sh       0755
 *   /fixtures/dir/            alpha ("A\n"), beta ("BB\n"), gamma/, link -> alpha
 *   /fixtures/emptydir/
 *   /fixtures/link-rel        -> file.txt
 *   /fixtures/link-abs        -> /fixtures/file.txt
 *   /fixtures/link-up         -> ../fixtures/file.txt
 *   /fixtures/link-dir        -> dir
 *   /fixtures/link-gamma      -> dir/gamma   (so link-gamma/.. is /fixtures/dir)
 *   /fixtures/loop-a <-> loop-b, self-loop -> self-loop, dangling -> does-not-exist
 *   /fixtures/chain/l0 -> l1 -> ... -> l40 -> ../file.txt  (l1: 40 links, l0: 41)
 *   /dev/{null,zero,full,urandom}, /tmp, /etc/passwd
 * Everything is owned by 0:0.  Nothing may be written: the sandbox's root is
 * read-only.
 */
#ifndef CONFORMANCE_FIXTURES_H
#define CONFORMANCE_FIXTURES_H

#define FILE_TXT "0123456789abcdefghijklmnopqrstuvwxyz\n"
#define FILE_LEN 37
#define FILE_MTIME_SEC 1000000000L
#define FILE_MTIME_NSEC 123456789L

#endif
