using System.Runtime.InteropServices;

namespace IoMux.Interop;

/// <summary>
/// errno values for the OS this process runs on, and their symbolic names. The numbers differ per OS
/// (EAGAIN is 11 on Linux and illumos, 35 on the BSDs and macOS), so code compares against these fields,
/// never against literals. Internal (issue 25): a user meets an errno as <see cref="PosixException.Errno"/> and its name
/// as <see cref="PosixException.ErrorName"/>; the table is plumbing, linked into each assembly that calls libc.
/// </summary>
internal static class Errno
{
    private enum Family { Linux, Bsd, Illumos }

    // Which OS this is: Platform.Flavor, the one place that tells illumos apart (src/Interop/Platform.cs).
    private static readonly Family Os = Platform.Flavor switch
    {
        UnixFlavor.Linux => Family.Linux,
        UnixFlavor.Illumos or UnixFlavor.Solaris => Family.Illumos,
        _ => Family.Bsd, // macOS, NetBSD, OpenBSD, DragonFly share the 4.4BSD numbering for everything below.
    };

    private static int Pick(int linux, int bsd, int illumos) => Os switch
    {
        Family.Linux => linux,
        Family.Bsd => bsd,
        _ => illumos,
    };

    public static readonly int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, ECHILD = 10;
    public static readonly int ENOMEM = 12, EACCES = 13, EFAULT = 14, EEXIST = 17, EINVAL = 22;
    public static readonly int ENOTDIR = 20, ENFILE = 23, EMFILE = 24, ESPIPE = 29, EROFS = 30, EPIPE = 32, ERANGE = 34;
    public static readonly int EAGAIN = Pick(11, 35, 11);
    public static readonly int EINPROGRESS = Pick(115, 36, 150);
    public static readonly int ENAMETOOLONG = Pick(36, 63, 78);
    public static readonly int ELOOP = Pick(40, 62, 90);
    // The socket errors a server meets when it binds (illumos: usr/src/uts/common/sys/errno.h, SVR4's numbering).
    public static readonly int EAFNOSUPPORT = Pick(97, 47, 124);
    public static readonly int EADDRINUSE = Pick(98, 48, 125);
    public static readonly int EADDRNOTAVAIL = Pick(99, 49, 126);
    public static readonly int ENOSYS = Pick(38, 78, 89);
    public static readonly int ENOTSOCK = Pick(88, 38, 95);
    public static readonly int ECONNABORTED = Pick(103, 53, 130);
    public static readonly int ECONNRESET = Pick(104, 54, 131);
    public static readonly int ENOBUFS = Pick(105, 55, 132);
    public static readonly int ENOTCONN = OsAbi.Errnos(Platform.Flavor).Enotconn; // the one table: OsAbi.Errnos
    public static readonly int ETIMEDOUT = Pick(110, 60, 145);
    public static readonly int ECONNREFUSED = Pick(111, 61, 146);
    public static readonly int ETIME = OsAbi.Errnos(Platform.Flavor).Etime; // -1 where the OS has none
    public static readonly int EBADFD = OsAbi.Errnos(Platform.Flavor).Ebadfd;
    // FreeBSD's Capsicum (sys/sys/errno.h: ENOTCAPABLE 93); on macOS 93 is ENOATTR, elsewhere there is none.
    public static readonly int ENOTCAPABLE = OsAbi.Errnos(Platform.Flavor).Enotcapable;

    private static readonly Dictionary<int, string> Names = BuildNames();

    private static Dictionary<int, string> BuildNames()
    {
        var names = new Dictionary<int, string>();
        foreach (var field in typeof(Errno).GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static))
        {
            if (field.FieldType == typeof(int) && field.GetValue(null) is int value && value > 0)
                names.TryAdd(value, field.Name);
        }
        return names;
    }

    /// <summary>The symbolic name of <paramref name="errno"/> ("EBADF"), or "errno N" when it has none here.</summary>
    public static string Name(int errno) => Names.TryGetValue(errno, out var name) ? name : $"errno {errno}";

    /// <summary>The C library's description of <paramref name="errno"/> (strerror).</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>The errno of the last LibraryImport call on this thread, read right after it.</summary>
    public static int Last => Marshal.GetLastPInvokeError();

    /// <summary>Throws a <see cref="PosixException"/> for the last call's errno.</summary>
    public static PosixException Fail(string operation, string? detail = null) => new(operation, Last, detail);
}
