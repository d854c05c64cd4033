// Linked into the assemblies that serve (IoMux.Web, IoMux.AspNetCore, iomux-socket-proxyd), not into Core: app-level
// interop is not part of the poller. Each gets its own internal copy (docs/API-REVIEW.md, "One interop home").
namespace IoMux.Interop;

/// <summary>
/// Keeps a server's own descriptors <see cref="Reserve"/> below the soft RLIMIT_NOFILE, so the .NET runtime always
/// finds free descriptors when it needs them. It needs them at moments nobody can predict: every thread it starts
/// (the thread pool's, the tiered-compilation worker, a signal handler's) takes a pipe, two descriptors, while it
/// starts (dotnet/runtime src/coreclr/pal/src/thread/threadsusp.cpp, InternalSuspendNewThreadFromData: pipe2), and
/// EMFILE there makes the runtime fail the thread start as "out of memory", which aborts the process (exit 134,
/// "Out of memory." or PAL_SEHException; docs/reliability/descriptor-limit.md). Giving spares back at the first
/// EMFILE is not enough: the server's own accepts and connects take the freed slots first. So the server accepts
/// only while what it holds plus what one more connection takes stays below the limit minus the reserve, and looks
/// at the limit again now and then, because another process may lower it (prlimit).
/// </summary>
internal sealed unsafe partial class DescriptorBudget
{
    /// <summary>Descriptors left free for the runtime: a handful of concurrent thread starts (two each) and the
    /// occasional file it opens.</summary>
    public const int Reserve = 16;

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, ulong* limits);

    // RLIMIT_NOFILE per OS, cited there: OsAbi.RlimitNofile (one table, shared with the conformance suite).
    private static int RLIMIT_NOFILE => LibC.RLIMIT_NOFILE;

    /// <summary>Measures what the process holds before it serves anything (the runtime's descriptors, listeners, spares).</summary>
    public DescriptorBudget() => Base = CountOpen();

    /// <summary>Descriptors the process holds beside its connections' (measured at start, and again whenever the
    /// server is idle: start-up leaves a few transient ones behind it).</summary>
    public int Base { get; private set; }

    /// <summary>Measures again; call it while no connection is open, so that all the process holds is the base.</summary>
    public void Remeasure() => Base = CountOpen();

    /// <summary>The soft descriptor limit now (long.MaxValue when unlimited or unknown).</summary>
    public static long SoftLimit()
    {
        ulong* limits = stackalloc ulong[2];
        return getrlimit(RLIMIT_NOFILE, limits) == 0 ? (long)Math.Min(limits[0], long.MaxValue) : long.MaxValue;
    }

    /// <summary>True when the server, holding <paramref name="inUse"/> descriptors for its connections, may take
    /// <paramref name="more"/>.</summary>
    public bool Allows(long inUse, int more) => Allows(inUse, more, SoftLimit());

    /// <summary>The same against a <paramref name="limit"/> the caller read with <see cref="SoftLimit"/> just now: a
    /// server that accepts a batch of connections in one wakeup reads the limit once for the batch, not per accept.</summary>
    public bool Allows(long inUse, int more, long limit)
    {
        // Far from the limit the accounting decides (no system call beyond getrlimit); near it, what is really
        // open does (the accounting cannot see the runtime's own descriptors come and go).
        if (Base + inUse + more + Reserve + NearLimit <= limit)
            return true;
        return CountOpen() + more + Reserve <= limit;
    }

    /// <summary>How close to the limit the real count is taken instead of the accounting.</summary>
    private const int NearLimit = 64;

    /// <summary>Open descriptors of this process. Listing <c>/proc/self/fd</c> (Linux, illumos) or <c>/dev/fd</c> (macOS,
    /// whose devfs lists every open descriptor) takes a descriptor itself, so it fails (EMFILE) at the limit, where the
    /// count matters most; and FreeBSD's <c>/dev/fd</c> lists only 0, 1 and 2 unless fdescfs is mounted over it ("files
    /// are created by default when devfs alone is mounted. fdescfs creates entries for all file descriptors": fdescfs(5),
    /// freebsd-src share/man/man5/fdescfs.5 at 039ea811636f; sys/kern/kern_descrip.c fildesc_drvinit makes exactly those
    /// three). Where no listing works or can be trusted, <see cref="ProbeOpen"/> counts without taking a descriptor. (The
    /// count used to fall back to a guess of 64, which at a limit of a few hundred let a server at its limit accept.)</summary>
    internal static int CountOpen()
    {
        string? listing = OperatingSystem.IsLinux() || Platform.IsIllumos ? "/proc/self/fd" : OperatingSystem.IsMacOS() ? "/dev/fd" : null;
        if (listing is not null)
        {
            try
            {
                // Every entry, not GetFiles: that leaves out entries that resolve to a directory, so it missed every open
                // directory (iomux serve's root, O_PATH | O_DIRECTORY). Less one: the listing's own descriptor, open only
                // while it lists. (Counted, it ate the one descriptor of slack ProxyFaultTests' EMFILE case leaves: the
                // paused proxy never found room to resume, and the waiting client timed out.)
                return Directory.GetFileSystemEntries(listing).Length - 1;
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        // FreeBSD and OpenBSD say the count in one call, without a descriptor and whatever the limit (the probe's cost
        // grows with the limit: ~1.4 ms at 20 000, ~120 ms at a million, on every count where no listing works).
        if (Platform.Flavor == UnixFlavor.FreeBSD && FreeBsdOpenCount() is int counted)
            return counted;
        if (Platform.Flavor == UnixFlavor.OpenBSD)
            return getdtablecount();
        return ProbeOpen(SoftLimit());
    }

    /// <summary>getdtablecount(2): "the number of file descriptors the process currently has open" (openbsd/src
    /// lib/libc/sys/getdtablecount.2 1.3; OpenBSD 5.1 and later).</summary>
    [System.Runtime.InteropServices.LibraryImport("libc")]
    private static partial int getdtablecount();

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int sysctl(int* name, uint nameLength, void* old, nuint* oldLength, void* @new, nuint newLength);

    /// <summary>sysctl kern.proc.nfds: { CTL_KERN 1, KERN_PROC 14, KERN_PROC_NFDS 43, 0 } (freebsd-src sys/sys/sysctl.h at
    /// 003ffd57) answers the calling process's open descriptors as one int (sys/kern/kern_descrip.c,
    /// sysctl_kern_proc_nfds: the bits set in its descriptor map; the last name must be 0). Null where the kernel lacks
    /// it (an older release; not run here: this machine is Linux): the probe then counts.</summary>
    private static int? FreeBsdOpenCount()
    {
        int* name = stackalloc int[] { 1, 14, 43, 0 };
        int count = 0;
        nuint length = sizeof(int);
        return sysctl(name, 4, &count, &length, null, 0) == 0 && length == sizeof(int) ? count : null;
    }

    /// <summary>How many descriptors poll(2) is given at a time: far below every system's bound on nfds (Linux refuses
    /// more than RLIMIT_NOFILE, FreeBSD more than kern.maxfilesperproc and FD_SETSIZE (sys_generic.c sys_poll), macOS
    /// more than OPEN_MAX or, unprivileged, the limit and FD_SETSIZE) and small enough for the stack (8 bytes each).</summary>
    private const int ProbeChunk = 256;

    /// <summary>Numbers probed at most when the limit is unlimited: Linux's default fs.nr_open.</summary>
    private const int MaxProbed = 1 << 20;

    /// <summary>POLLNVAL: 0x20 on Linux, the BSDs, macOS and illumos (docs/research/kqueue-ports-constants.md; the poll
    /// backend's PollInterop uses the same bits).</summary>
    private const short POLLNVAL = 0x20;

    /// <summary>POLLIN: 0x1 on the same systems. Asked for so that macOS looks at the descriptor at all: its poll(2)
    /// registers a kqueue filter per event asked for and reports POLLNVAL only when that registration fails; with no
    /// events asked for it registers nothing and answers 0 for every number, open or not (xnu bsd/kern/sys_generic.c
    /// poll_nocancel at 1031c584: "if (events &amp; (POLLIN | ...)) { kev.filter = EVFILT_READ; ... kevent_register }",
    /// then "if (kev.flags &amp; EV_ERROR) revents = POLLNVAL; else revents = 0"), so the probe counted every number below
    /// the limit as open. OpenBSD registers EVFILT_EXCEPT for an empty request (sys/kern/sys_generic.c ppollregister,
    /// forcehup), and Linux, FreeBSD, NetBSD and illumos look the number up whatever is asked; POLLIN changes nothing
    /// there, and the zero timeout means nothing is waited for.</summary>
    private const short POLLIN = 0x1;

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int poll(PollFd* fds, nuint count, int timeoutMs);

    /// <summary>Counts the open descriptors below <paramref name="limit"/> without opening one: poll(2) with a zero
    /// timeout reports POLLNVAL exactly for the numbers that are not open (POSIX poll: "The specified fd value is
    /// invalid"; POLLIN asked for, see <see cref="POLLIN"/>). One system call per 256 numbers. On macOS poll(2) "does not
    /// support devices" (its man page, BUGS): a descriptor whose read filter cannot be registered is reported POLLNVAL
    /// too, so there it may miss device descriptors; macOS lists /dev/fd first. When poll itself fails
    /// the answer is the limit: a budget that cannot count must not let its server take more.</summary>
    internal static int ProbeOpen(long limit)
    {
        int numbers = (int)Math.Min(Math.Max(limit, 0), MaxProbed);
        PollFd* set = stackalloc PollFd[ProbeChunk];
        int open = 0;
        for (int first = 0; first < numbers; first += ProbeChunk)
        {
            int count = Math.Min(ProbeChunk, numbers - first);
            for (int i = 0; i < count; i++)
                set[i] = new PollFd { Descriptor = first + i, Events = POLLIN };
            int rc;
            do
                rc = poll(set, (nuint)count, 0);
            while (rc < 0 && Errno.Last == Errno.EINTR);
            if (rc < 0)
                return numbers;
            for (int i = 0; i < count; i++)
                if ((set[i].ReturnedEvents & POLLNVAL) == 0)
                    open++;
        }
        return open;
    }
}
