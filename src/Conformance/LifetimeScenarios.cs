using IoMux.Interop;
using Microsoft.Win32.SafeHandles;
using static IoMux.Conformance.ScenarioContext;
using static IoMux.Readiness;

namespace IoMux.Conformance;

/// <summary>F1–F5 and X2, X5, X6: registrations, their lifetime, stale events, scale.</summary>
internal static class LifetimeScenarios
{
    public static IEnumerable<Scenario> All =>
    [
        new("F1", "raw fd: dup it, close the original, deregister, peer writes",
            "deregistering a closed raw fd does not throw; no event reaches the caller (epoll still holds the dup's file description: the stale event is dropped)", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable);
                c.Track(LibC.dup(a));
                c.Close(a);
                reg.Dispose();
                Write(b, 1);
                ExpectNothing(p, 1, "after deregistering the closed original");
            }),
        new("F1b", "SafeHandle: close the handle while registered, then deregister",
            "the close happens at once (a registration never pins the handle, so Socket.Dispose cannot wait on it); nothing is reported for it; deregistering afterwards does not throw", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                c.Forget(a);
                Write(b, 1);
                var handle = new SafeFileHandle(a, ownsHandle: true);
                var reg = p.Register(handle, 1, Interest.Readable);
                handle.Dispose();
                Check(LibC.fcntl(a, LibC.F_GETFD, 0) < 0 && Errno.Last == Errno.EBADF, "the descriptor must be closed by the handle's disposal");
                ExpectNothing(p, 1, "after the handle was closed (a byte was buffered)");
                reg.Dispose();
                Check(!reg.IsActive, "deregistered");
            }),
        new("F2", "raw fd: close, then deregister",
            "no exception; the poller keeps working for other registrations", c =>
            {
                var p = c.NewPoller();
                var (a, _) = c.UnixPair();
                var (x, y) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable);
                p.Register(x, 2, Interest.Readable);
                c.Close(a);
                reg.Dispose();
                Write(y, 1);
                Expect(p, 2, Readable, None, "another registration after the close");
            }),
        new("F3", "a descriptor number deregistered, reused for another file, registered again",
            "events carry the new registration's token only; never the old one", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                Write(b, 1);
                var old = p.Register(a, 1, Interest.Readable);
                Expect(p, 1, Readable, None, "old registration");
                old.Dispose();
                var (x, y) = c.UnixPair();
                Check(LibC.dup2(x, a) == a, "dup2 onto the old number");
                c.Close(x);
                p.Register(a, 2, Interest.Readable);
                Write(y, 1);
                var events = WaitOnce(p, MustArrive);
                Check(events.All(e => e.Token != 1), "an event carried the old registration's token");
                Check(events.Any(e => e.Token == 2), "the new registration was not reported");
            }),
        new("F4", "register a regular file, and a directory",
            "UnsupportedDescriptorException on every backend (epoll says EPERM, poll would say always ready)", c =>
            {
                var p = c.NewPoller();
                var path = Path.GetTempFileName();
                try
                {
                    using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
                    Throws<UnsupportedDescriptorException>(() => p.Register(file, 1, Interest.Readable), "regular file");
                    using var dir = new SafeFileHandle(c.Track(OpenDirectory(Path.GetTempPath())), ownsHandle: false);
                    Throws<UnsupportedDescriptorException>(() => p.Register(dir, 2, Interest.Readable), "directory");
                    Check(p.RegistrationCount == 0, "a refused registration must leave nothing behind");
                }
                finally
                {
                    File.Delete(path);
                }
            }),
        new("F5", "register the same descriptor twice",
            "AlreadyRegisteredException (also from the backend directly); the first registration keeps working", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                p.Register(a, 1, Interest.Readable);
                Throws<AlreadyRegisteredException>(() => p.Register(a, 2, Interest.Writable), "second registration");
                using var backend = c.Backend.Create();
                backend.Add(a, 1, Interest.Readable, TriggerMode.Level);
                Throws<AlreadyRegisteredException>(() => backend.Add(a, 1, Interest.Readable, TriggerMode.Level), "backend double add");
                Write(b, 1);
                Expect(p, 1, Readable, None, "the first registration");
            }),
        new("X2", "deregister while an event is pending",
            "no event after deregistration", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                var reg = p.Register(a, 1, Interest.Readable);
                Write(b, 1);
                Expect(p, 1, Readable, None, "before deregistering");
                reg.Dispose();
                Check(!reg.IsActive, "a disposed registration reports IsActive = false");
                ExpectNothing(p, 1, "after deregistering");
            }),
        new("X5", "register from another thread during a wait",
            "the waiting thread reports the new registration without a timeout passing", c =>
            {
                var p = c.NewPoller();
                var (a, b) = c.UnixPair();
                Write(b, 1);
                var waiter = Task.Run(() => Expect(p, 7, Readable, None, "registration made during the wait"));
                Thread.Sleep(50);
                p.Register(a, 7, Interest.Readable);
                Check(waiter.Wait(MustArrive + MustArrive), "the waiter never saw the registration");
            }),
        new("X6", "10 000 registered descriptors, one active",
            "exactly that one is reported", c =>
            {
                var p = c.NewPoller();
                if (p.Capabilities.MaxDescriptor < 20_000)
                    NotApplicable($"{p.Capabilities.Name} watches descriptors up to {p.Capabilities.MaxDescriptor} only (FD_SETSIZE)");
                ResourceLimits.RaiseOpenFileLimit();
                var ends = new List<(int, int)>();
                try
                {
                    for (int i = 0; i < 5_000; i++)
                        ends.Add(c.UnixPair());
                }
                catch (PosixException e) when (e.Errno == Errno.EMFILE)
                {
                    NotApplicable($"the open-file limit ({ResourceLimits.OpenFileLimit()}) is below 10 000 descriptors plus the runtime's own");
                }
                ulong token = 0;
                foreach (var (a, b) in ends)
                {
                    p.Register(a, token++, Interest.Readable);
                    p.Register(b, token++, Interest.Readable);
                }
                Write(ends[2_500].Item2, 1); // makes token 5 000 readable
                var events = WaitOnce(p, MustArrive);
                Check(events.Length == 1 && events[0].Token == 5_000, $"expected only token 5000, got {events.Length} events{(events.Length > 0 ? $", first {events[0].Token}" : "")}");
            }),
    ];

    private static unsafe int OpenDirectory(string path)
    {
        int fd = FileInterop.open(path, 0);
        if (fd < 0)
            throw Errno.Fail("open", path);
        return fd;
    }
}

internal static partial class FileInterop
{
    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    public static partial int open(string path, int flags);
}
