using IoMux.Interop;

// Compiled into the assemblies that use it (IoMux.Web, iomux-socket-proxyd), not into Core.
#if IOMUX_SOCKET_PROXY
namespace IoMux.SocketProxy;
#else
namespace IoMux.Interop;
#endif

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

    /// <summary>Open descriptors of this process (/proc/self/fd or /dev/fd); a conservative guess where neither lists them.</summary>
    private static int CountOpen()
    {
        foreach (var directory in new[] { "/proc/self/fd", "/dev/fd" })
        {
            try
            {
                return Directory.GetFiles(directory).Length;
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return 64;
    }
}
