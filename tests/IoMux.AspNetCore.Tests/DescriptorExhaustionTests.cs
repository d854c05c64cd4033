using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// The process out of descriptors (EMFILE on accept, issue 23): the IoMux transport's loops must idle, not spin on a
/// listener that stays readable, and serve the waiting clients once descriptors are free again.
/// </summary>
/// <remarks>Kestrel's socket transport is not the reference here, because it has the bug this fixes:
/// SocketConnectionListener.AcceptAsync catches every SocketException, EMFILE included, as "the connection got reset
/// while it was in the backlog, so we try again" and accepts again at once (dotnet/aspnetcore
/// src/Servers/Kestrel/Transport.Sockets/src/SocketConnectionListener.cs), a busy loop; and with no descriptor left
/// the runtime itself aborts the process when it starts a thread (docs/reliability/descriptor-limit.md), which here
/// would be the test host. The squeeze is in-process (setrlimit, restored in finally) with the transport's reserve
/// (DescriptorBudget.Reserve, 16) still free for the runtime.</remarks>
[TestFixtureSource(nameof(Targets))]
[NonParallelizable]
public sealed partial class DescriptorExhaustionTests(TransportTarget target)
{
    public static IEnumerable<TransportTarget> Targets() =>
        TransportTarget.All().Where(t => t.Backend is not null && !t.IsModel);

    [LibraryImport("libc", SetLastError = true)] internal static partial int getrlimit(int resource, [Out] ulong[] limits);
    [LibraryImport("libc", SetLastError = true)] internal static partial int setrlimit(int resource, ulong[] limits);

    internal const int Clients = 40;

    /// <summary>Descriptors left free when squeezed: the reserve the transport keeps for the runtime and a few more,
    /// so a handful of connections are accepted and the rest wait.</summary>
    internal const int Headroom = 24;

    /// <summary>CPU the loops may use in a second while paused (clock ticks, 100 a second): a pause timer every
    /// 100 ms per loop, each a few system calls; a spinning loop takes about 100 alone.</summary>
    internal const long IdleTicks = 15;

    [OneTimeSetUp]
    public void Supported()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    [Test, CancelAfter(60_000)]
    public async Task AtTheDescriptorLimitTheLoopsIdleAndServingResumesWhenDescriptorsFree(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(target);
        using (var warm = new HttpClient { BaseAddress = app.BaseAddress })
            Assert.That(await warm.GetByteArrayAsync("/hello", token), Is.EqualTo(TestApp.Hello)); // JIT, threads: before the squeeze
        // The clients' sockets are made before the squeeze: connecting them takes no descriptor, accepting them does.
        var clients = new Socket[Clients];
        for (int i = 0; i < Clients; i++)
            clients[i] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var responses = new Task<string>[Clients];
        using var cpu = new LoopCpu();
        Assert.That(cpu.Threads, Is.EqualTo(2), "the app's two loop threads are measured");
        var saved = new ulong[2];
        Assert.That(getrlimit(Interop.LibC.RLIMIT_NOFILE, saved), Is.EqualTo(0));
        long pausedTicks;
        int servedWhileSqueezed;
        try
        {
            int open = Directory.GetFiles("/proc/self/fd").Length;
            Assert.That(setrlimit(Interop.LibC.RLIMIT_NOFILE, [(ulong)(open + Headroom), saved[1]]), Is.EqualTo(0), "setrlimit");
            for (int i = 0; i < Clients; i++)
            {
                await clients[i].ConnectAsync(IPAddress.Loopback, app.Port, token); // completes in the backlog
                await clients[i].SendAsync(Encoding.ASCII.GetBytes("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"), token);
                responses[i] = ReadResponseAsync(clients[i], token);
            }
            await Task.Delay(1000, token); // what can be accepted is, and the loops pause
            long before = cpu.Ticks();
            await Task.Delay(1000, token);
            pausedTicks = cpu.Ticks() - before;
            servedWhileSqueezed = responses.Count(r => r.IsCompletedSuccessfully);
        }
        finally
        {
            setrlimit(Interop.LibC.RLIMIT_NOFILE, saved);
        }
        try
        {
            Assert.That(servedWhileSqueezed, Is.LessThan(Clients), "the squeeze left clients waiting in the backlog");
            Assert.That(pausedTicks, Is.LessThanOrEqualTo(IdleTicks), $"the loops used {pausedTicks} clock ticks in 1 s at the descriptor limit");
            // Descriptors free again: every waiting client is served, within the pause time and then some.
            var all = Task.WhenAll(responses);
            await all.WaitAsync(TimeSpan.FromSeconds(15), token);
            Assert.That(responses.Select(r => r.Result), Is.All.EndWith("Hello, World!"),
                $"{servedWhileSqueezed} served while squeezed; every client once descriptors were free");
            TestContext.Out.WriteLine($"{servedWhileSqueezed} of {Clients} served at the limit; loops used {pausedTicks} ticks in 1 s paused");
        }
        finally
        {
            foreach (var client in clients)
                client.Dispose();
        }
    }

    internal static async Task<string> ReadResponseAsync(Socket socket, CancellationToken token)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        while (!text.ToString().EndsWith("Hello, World!", StringComparison.Ordinal))
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(), token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), token);
            if (n == 0)
                break;
            text.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
        return text.ToString();
    }

    [Test, CancelAfter(60_000)]
    public async Task AListenerShutDownBehindTheTransportsBackDoesNotSpinTheLoops(CancellationToken token)
    {
        // A host's listening socket shut down under the app (shutdown(2) on a listener: accept says EINVAL and poll
        // reports it readable for good). Before: each loop iteration accepted, failed and logged again, at 100%.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        await using var app = await TestApp.StartAsync(target, o => o.ListenHandle((ulong)listener.Handle));
        using var cpu = new LoopCpu();
        Assert.That(cpu.Threads, Is.GreaterThan(0), "the transport's loop threads");
        listener.Shutdown(SocketShutdown.Both);
        await Task.Delay(300, token); // the first failures and the pause
        long before = cpu.Ticks();
        await Task.Delay(1000, token);
        long ticks = cpu.Ticks() - before;
        TestContext.Out.WriteLine($"loops used {ticks} clock ticks in 1 s with a shut-down listener");
        Assert.That(ticks, Is.LessThanOrEqualTo(IdleTicks), $"the loops used {ticks} clock ticks in 1 s (a busy loop uses ~100 per loop)");
    }

    /// <summary>User and system CPU of the transport's loop threads (named iomux-kestrel-N), in clock ticks, from
    /// /proc/self/task/*/stat (fields 14 and 15, counted after the parenthesised name). The stat files are opened
    /// before the squeeze and read again from offset 0 (procfs renders them afresh), so measuring takes no
    /// descriptor at the limit.</summary>
    internal sealed class LoopCpu : IDisposable
    {
        private readonly List<FileStream> _stats = [];
        private readonly byte[] _buffer = new byte[1024];

        public LoopCpu()
        {
            foreach (var task in Directory.GetDirectories("/proc/self/task"))
            {
                FileStream stat;
                try
                {
                    stat = new FileStream(Path.Combine(task, "stat"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
                }
                catch (IOException)
                {
                    continue; // the thread ended meanwhile
                }
                if (Name(Read(stat)).StartsWith("iomux-kestrel-", StringComparison.Ordinal))
                    _stats.Add(stat);
                else
                    stat.Dispose();
            }
        }

        public int Threads => _stats.Count;

        public long Ticks()
        {
            long ticks = 0;
            foreach (var stat in _stats)
            {
                var text = Read(stat);
                var fields = text[(text.LastIndexOf(')') + 2)..].Split(' '); // fields[0] is field 3 (state)
                ticks += long.Parse(fields[11]) + long.Parse(fields[12]);
            }
            return ticks;
        }

        private string Read(FileStream stat)
        {
            stat.Seek(0, SeekOrigin.Begin);
            int n = stat.Read(_buffer);
            return Encoding.ASCII.GetString(_buffer, 0, n);
        }

        private static string Name(string stat) => stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')];

        public void Dispose()
        {
            foreach (var stat in _stats)
                stat.Dispose();
        }
    }
}
