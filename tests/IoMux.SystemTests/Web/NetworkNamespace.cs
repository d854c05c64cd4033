using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Tests.Web;

/// <summary>Runs test code in a network namespace of its own, so it can set per-namespace sysctls
/// (net.ipv4.*) without touching the machine's. Namespaces belong to threads: the body runs on a dedicated
/// thread that called unshare(CLONE_NEWNET), and every socket it makes lives in that namespace.</summary>
internal static unsafe partial class NetworkNamespace
{
    private const int CLONE_NEWNET = 0x40000000;
    private const nuint SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914;
    private const short IFF_UP = 0x1;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unshare(int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, byte* ifreq);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    /// <summary>Why the namespace cannot be made here (not Linux, not privileged), or null.</summary>
    public static string? UnavailableReason()
    {
        if (!OperatingSystem.IsLinux())
            return "network namespaces are Linux-only";
        try
        {
            Run(() => 0);
            return null;
        }
        catch (InvalidOperationException e)
        {
            return e.Message;
        }
    }

    public static T Run<T>(Func<T> body)
    {
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                if (unshare(CLONE_NEWNET) != 0)
                    throw new InvalidOperationException($"unshare(CLONE_NEWNET): {Interop.Errno.Name(Marshal.GetLastPInvokeError())} (needs CAP_SYS_ADMIN)");
                BringLoopbackUp();
                result = body();
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.IsBackground = true;
        thread.Start();
        // The bodies are bounded tests of a few seconds; a body that hangs fails here instead of hanging the run.
        if (!thread.Join(TimeSpan.FromMinutes(3)))
            throw new TimeoutException("the body run in the network namespace did not finish within 3 minutes");
        if (failure is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
        return result;
    }

    /// <summary>Writes a sysctl of the current thread's namespace (call inside <see cref="Run"/>).</summary>
    public static void SetSysctl(string name, string value) =>
        File.WriteAllText("/proc/sys/" + name.Replace('.', '/'), value);

    // A new namespace has only "lo", and it is down.
    private static void BringLoopbackUp()
    {
        int fd = socket(2, 2, 0); // AF_INET, SOCK_DGRAM: any socket serves for interface ioctls
        if (fd < 0)
            throw new InvalidOperationException("socket for ioctl failed");
        try
        {
            byte* ifreq = stackalloc byte[40]; // struct ifreq: char ifr_name[16] + a 24-byte union (x86-64, arm64)
            new Span<byte>(ifreq, 40).Clear();
            ifreq[0] = (byte)'l';
            ifreq[1] = (byte)'o';
            if (ioctl(fd, SIOCGIFFLAGS, ifreq) != 0)
                throw new InvalidOperationException($"SIOCGIFFLAGS lo: {Interop.Errno.Name(Marshal.GetLastPInvokeError())}");
            *(short*)(ifreq + 16) |= IFF_UP;
            if (ioctl(fd, SIOCSIFFLAGS, ifreq) != 0)
                throw new InvalidOperationException($"SIOCSIFFLAGS lo: {Interop.Errno.Name(Marshal.GetLastPInvokeError())}");
        }
        finally
        {
            close(fd);
        }
    }
}
