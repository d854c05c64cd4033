using System.Runtime.InteropServices;

namespace IoMux.Conformance;

/// <summary>RLIMIT_NOFILE, for scenarios and benchmarks that need many descriptors.</summary>
public static unsafe partial class ResourceLimits
{
    // Per OS, cited there: OsAbi.RlimitNofile (the one table; DescriptorBudget reads it too).
    private static int RLIMIT_NOFILE => IoMux.Interop.LibC.RLIMIT_NOFILE;

    [LibraryImport("libc", SetLastError = true)] private static partial int getrlimit(int resource, ulong* limits);
    [LibraryImport("libc", SetLastError = true)] private static partial int setrlimit(int resource, ulong* limits);

    /// <summary>The current soft open-file limit.</summary>
    public static long OpenFileLimit()
    {
        ulong* limits = stackalloc ulong[2];
        return getrlimit(RLIMIT_NOFILE, limits) == 0 ? (long)Math.Min(limits[0], long.MaxValue) : -1;
    }

    /// <summary>Raises the soft open-file limit to the hard limit; returns the new soft limit.</summary>
    public static long RaiseOpenFileLimit()
    {
        ulong* limits = stackalloc ulong[2];
        if (getrlimit(RLIMIT_NOFILE, limits) == 0 && limits[0] < limits[1])
        {
            limits[0] = limits[1];
            setrlimit(RLIMIT_NOFILE, limits);
        }
        return OpenFileLimit();
    }
}
