/* The KVM platform's page-table editor, compiled into platforms.kvm._kvm_ext by _build_kvm.py
   (after its definitions of struct rk_pool and struct rk_space, and its includes). */

/* -- page tables ----------------------------------------------------------------------- */

#define PTE_P 1UL
#define PTE_W 2UL
#define PTE_U 4UL
#define PTE_NX (1UL << 63)
#define PTE_NONE 0x800UL      /* ignored by the MMU: mapped PROT_NONE (the address is kept) */
#define PTE_ADDR 0x000FFFFFFFFFF000UL

/* Why the page tables are copied on write.  The shadow MMU builds its tables from what the
   guest's tables held when it walked them and notices only the GUEST's writes (it write-protects
   them in the guest's view); the Sentry writes them from the host.  So:
   - a new mapping (a non-present entry made present) is written in place: a guest access walks
     the tables again and finds it;
   - an entry the MMU never used (accessed bit clear: KVM sets it when it shadows an entry, and
     never prefetches one without it) is changed in place too;
   - any other change (unmap, fewer rights, another page) copies the table page and every page
     above it to fresh pages (new guest-physical addresses, which the MMU has never seen) and
     gives the address space a new root; the contexts load it as CR3 on their next run.  The
     replaced pages are retired, not freed: the MMU may still hold shadows keyed by their
     addresses until the next flush (re-registering the memslot, machine.py), which is needed
     only when the pool runs out.
   A page allocated since the guest last ran is "fresh": the MMU cannot know it, so it is
   written in place. */

static uint64_t *tbl(struct rk_pool *p, unsigned long gpa) {
    return (uint64_t *)(p->base + (gpa - p->gpa));
}

static unsigned long pgno(struct rk_pool *p, unsigned long gpa) { return (gpa - p->gpa) >> 12; }

long rk_pt_alloc(struct rk_pool *p) {
    unsigned long page;
    if (p->free_head) {
        page = p->free_head;
        p->free_head = *tbl(p, page);
    } else {
        if (p->next >= p->npages)
            return -ENOMEM;
        page = p->gpa + (p->next++ << 12);
    }
    memset(tbl(p, page), 0, 4096);
    p->used++;
    p->fresh[pgno(p, page)] = 1;
    p->any_fresh = 1;
    return (long)page;
}

static void pt_retire(struct rk_pool *p, unsigned long page) {
    if (p->fresh[pgno(p, page)]) {              /* never seen by the MMU: free at once */
        *tbl(p, page) = p->free_head;
        p->free_head = page;
    } else {
        *tbl(p, page) = p->retired_head;
        p->retired_head = page;
        p->retired++;
    }
    p->used--;
}

/* After a flush: the retired pages are plain free pages again. */
void rk_pool_recycle(struct rk_pool *p) {
    while (p->retired_head) {
        unsigned long page = p->retired_head;
        p->retired_head = *tbl(p, page);
        *tbl(p, page) = p->free_head;
        p->free_head = page;
    }
    p->retired = 0;
}

/* The guest is about to run: every page it can reach may be shadowed from now on. */
void rk_pool_commit(struct rk_pool *p) {
    if (p->any_fresh) {
        memset(p->fresh, 0, p->npages);
        p->any_fresh = 0;
    }
}

/* A fresh copy of table page *ref (updating *ref), unless it is fresh already. */
static int make_fresh(struct rk_pool *p, uint64_t *ref, unsigned long flags_keep) {
    unsigned long old = *ref & PTE_ADDR;
    if (p->fresh[pgno(p, old)])
        return 0;
    long n = rk_pt_alloc(p);
    if (n < 0)
        return (int)n;
    memcpy(tbl(p, n), tbl(p, old), 4096);
    *ref = (unsigned long)n | (*ref & flags_keep);
    pt_retire(p, old);
    return 0;
}

/* The leaf PTE slot for va: creating missing tables when `create`, copying the path to fresh
   pages when `cow`.  NULL when absent (or out of pages: *err = -ENOMEM). */
static uint64_t *pte_slot(struct rk_pool *p, struct rk_space *sp, unsigned long va, int create,
                          int cow, int *err) {
    *err = 0;
    if (cow && (*err = make_fresh(p, &sp->root, 0)) < 0)
        return NULL;
    unsigned long t = sp->root;
    for (int shift = 39; shift > 12; shift -= 9) {
        uint64_t *e = tbl(p, t) + ((va >> shift) & 511);
        if (!(*e & PTE_P)) {
            if (!create)
                return NULL;
            long n = rk_pt_alloc(p);
            if (n < 0) {
                *err = (int)n;
                return NULL;
            }
            *e = (unsigned long)n | PTE_P | PTE_W | PTE_U;
        } else if (cow && (*err = make_fresh(p, e, ~PTE_ADDR)) < 0) {
            return NULL;
        }
        t = *e & PTE_ADDR;
    }
    return tbl(p, t) + ((va >> 12) & 511);
}

#define PTE_A 0x20UL

/* Does replacing `old` by `nw` need the MMU to forget what it shadowed of `old`? */
static int narrows(uint64_t old, uint64_t nw) {
    if (!(old & PTE_P) || !(old & PTE_A))
        return 0;
    return (old & PTE_ADDR) != (nw & PTE_ADDR) || !(nw & PTE_P) ||
           ((old & PTE_W) && !(nw & PTE_W)) || (!(old & PTE_NX) && (nw & PTE_NX));
}

static int set_pte(struct rk_pool *p, struct rk_space *sp, unsigned long va, uint64_t nw,
                   int create, int keep_addr, unsigned long *skip) {
    int err;
    *skip = 0;
    uint64_t *e = pte_slot(p, sp, va, create, 0, &err);
    if (e == NULL) {
        if (err)
            return err;
        *skip = 1;
        return 0;
    }
    if (keep_addr) {
        if (*e == 0)
            return 0;                          /* nothing mapped here */
        nw = (*e & PTE_ADDR) | (nw ? nw : PTE_NONE);
    }
    if (narrows(*e, nw)) {
        e = pte_slot(p, sp, va, 0, 1, &err);
        if (e == NULL)
            return err ? err : -EINVAL;
    }
    *e = nw;
    return 0;
}

/* Map [va, va+len) to gpa.. with `flags` (0: unmap).  0 or -ENOMEM (the pool is out of pages:
   flush, rk_pool_recycle, and call again: the call is idempotent). */
int rk_pt_map(struct rk_pool *p, struct rk_space *sp, unsigned long va, unsigned long len,
              unsigned long gpa, unsigned long flags) {
    for (unsigned long off = 0; off < len; off += 4096) {
        unsigned long skip;
        int r = set_pte(p, sp, va + off, flags ? ((gpa + off) | flags) : 0, flags != 0, 0, &skip);
        if (r < 0)
            return r;
        if (skip)
            off = ((va + off) | 0x1FFFFF) - va;   /* no table: on to the next 2 MiB */
    }
    return 0;
}

/* New rights for the mapped entries of [va, va+len) (flags 0: PROT_NONE, the address kept). */
int rk_pt_protect(struct rk_pool *p, struct rk_space *sp, unsigned long va, unsigned long len,
                  unsigned long flags) {
    for (unsigned long off = 0; off < len; off += 4096) {
        unsigned long skip;
        int r = set_pte(p, sp, va + off, flags, 0, 1, &skip);
        if (r < 0)
            return r;
        if (skip)
            off = ((va + off) | 0x1FFFFF) - va;
    }
    return 0;
}

unsigned long rk_pt_lookup(struct rk_pool *p, struct rk_space *sp, unsigned long va) {
    int err;
    uint64_t *e = pte_slot(p, sp, va, 0, 0, &err);
    return e ? *e : 0;
}

static void retire_level(struct rk_pool *p, unsigned long t, int level, int entries) {
    uint64_t *e = tbl(p, t);
    if (level > 1)
        for (int i = 0; i < entries; i++)
            if (e[i] & PTE_P)
                retire_level(p, e[i] & PTE_ADDR, level - 1, 512);
    pt_retire(p, t);
}

/* Retire a whole address space's tables: the first `top_entries` PML4 slots are its own. */
void rk_pt_free_tree(struct rk_pool *p, struct rk_space *sp, int top_entries) {
    retire_level(p, sp->root, 4, top_entries);
    sp->root = 0;
}

