using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// The two guards against descriptor exhaustion, each reached on purpose: the budget, which stops accepting while the
/// runtime's reserve is still free, must count descriptors the application opened after the first bind; and where it
/// cannot see them (they were opened while connections were open), accept(2) itself says EMFILE, and that branch must
/// pause the loops too and let serving resume.
/// </summary>
[TestFixtureSource(nameof(Targets))]
[NonParallelizable]
public sealed class DescriptorBudgetTests(TransportTarget target)
{
    /// <summary>epoll, and select (where an accept into the runtime's last descriptors aborted the process).</summary>
    public static IEnumerable<TransportTarget> Targets() => TransportTarget.All().Where(t => t.Name is "epoll" or "select");

    // The squeeze's numbers are DescriptorExhaustionTests': 40 clients, 24 descriptors free, 15 ticks a second idle.
    private const int Clients = DescriptorExhaustionTests.Clients, Headroom = DescriptorExhaustionTests.Headroom;
    private const long IdleTicks = DescriptorExhaustionTests.IdleTicks;

    [OneTimeSetUp]
    public void Supported()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    /// <summary>Descriptors the "application" opens after the transport bound (files, clients of other services).</summary>
    private const int Extra = 120;

    /// <summary>The pause reason the transport logs when its budget (not accept) stopped it.</summary>
    private const string BudgetReason = "descriptor budget";

    [Test, CancelAfter(60_000)]
    public async Task TheBudgetCountsDescriptorsOpenedAfterTheFirstBind(CancellationToken token)
    {
        var logs = new LogLines();
        await using var app = await TestApp.StartAsync(target, logs: logs);
        using (var warm = await RawClient.ConnectAsync(app.Port, token))
        {
            // Connection: close, read to the server's FIN: the transport holds no connection from here on (a
            // keep-alive one ends only when the server gets to the client's FIN, which a loaded machine may delay).
            await warm.SendAsync(token, "GET /hello HTTP/1.1", "Host: x", "Connection: close", "", "");
            Assert.That(await warm.ReadToEndAsync(token), Is.EqualTo("FIN"));
            Assert.That(warm.Received, Does.EndWith("Hello, World!"));
        }
        var extra = OpenDevNull(Extra);
        var clients = NewClients();
        // Idle for more than a second: the next accept, at zero connections, measures what the process holds again.
        await Task.Delay(1200, token);
        var (responses, served) = await SqueezeAsync(app, clients, token, whileSqueezed: () => Task.Delay(1000, token), release: extra);
        try
        {
            var paused = logs.Lines.Where(l => l.Contains("not accepting", StringComparison.Ordinal)).ToArray();
            TestContext.Out.WriteLine($"{served} of {Clients} served while squeezed; paused: {string.Join(" | ", paused)}");
            Assert.That(paused, Has.Some.Contains(BudgetReason), "the budget stopped accepting");
            Assert.That(paused, Has.None.Contains("EMFILE"), "before accept(2) ran out: the runtime's reserve stayed free");
            Assert.That(served, Is.LessThan(Clients), "the squeeze left clients waiting");
            await AllServedAsync(responses, served, token);
        }
        finally
        {
            foreach (var client in clients)
                client.Dispose();
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task WhenAcceptSaysEmfileTheLoopsIdleAndServingResumes(CancellationToken token)
    {
        var logs = new LogLines();
        await using var app = await TestApp.StartAsync(target, logs: logs);
        // A connection open throughout: the budget is not measured again, so the descriptors opened below are ones its
        // accounting cannot see, and accept(2) is what runs out (EMFILE).
        using var held = await RawClient.ConnectAsync(app.Port, token);
        await held.SendAsync(token, "GET /hello HTTP/1.1", "Host: x", "", "");
        await held.ReceiveAsync("Hello, World!", token);
        var extra = OpenDevNull(Extra);
        var clients = NewClients();
        using var cpu = new DescriptorExhaustionTests.LoopCpu();
        Assert.That(cpu.Threads, Is.EqualTo(2), "the app's two loop threads are measured");
        long ticks = -1;
        var (responses, served) = await SqueezeAsync(app, clients, token, release: extra, whileSqueezed: async () =>
        {
            var deadline = Stopwatch.StartNew();
            while (!logs.Lines.Any(l => l.Contains("EMFILE", StringComparison.Ordinal)) && deadline.Elapsed < TimeSpan.FromSeconds(10))
                await Task.Delay(10, token);
            // Briefly: with no descriptor free the runtime cannot start a thread (docs/reliability/descriptor-limit.md);
            // the transport gave its spares back at the EMFILE, which is what lets this test wait at all.
            long before = cpu.Ticks();
            await Task.Delay(500, token);
            ticks = cpu.Ticks() - before;
        });
        try
        {
            Assert.That(logs.Lines, Has.Some.Contains("EMFILE"), "accept(2) said EMFILE and the transport paused on it");
            Assert.That(ticks, Is.InRange(0, IdleTicks / 2), $"the loops used {ticks} clock ticks in 0.5 s paused at EMFILE");
            await AllServedAsync(responses, served, token);
            TestContext.Out.WriteLine($"{served} of {Clients} served at EMFILE; loops used {ticks} ticks in 0.5 s");
        }
        finally
        {
            foreach (var client in clients)
                client.Dispose();
        }
    }

    private static Socket[] NewClients()
    {
        var clients = new Socket[Clients];
        for (int i = 0; i < Clients; i++)
            clients[i] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        return clients;
    }

    private static List<Microsoft.Win32.SafeHandles.SafeFileHandle> OpenDevNull(int count)
    {
        var handles = new List<Microsoft.Win32.SafeHandles.SafeFileHandle>(count);
        for (int i = 0; i < count; i++)
            handles.Add(File.OpenHandle("/dev/null"));
        return handles;
    }

    /// <summary>Squeezes the limit to what is open plus <see cref="Headroom"/>, sends every client's request, runs
    /// <paramref name="whileSqueezed"/>, then restores the limit and closes <paramref name="release"/> (in finally).
    /// Returns the responses and how many were complete while squeezed.</summary>
    private async Task<(Task<string>[] Responses, int Served)> SqueezeAsync(TestApp app, Socket[] clients, CancellationToken token,
        Func<Task> whileSqueezed, List<Microsoft.Win32.SafeHandles.SafeFileHandle> release)
    {
        var responses = new Task<string>[Clients];
        var saved = new ulong[2];
        Assert.That(DescriptorExhaustionTests.getrlimit(Interop.LibC.RLIMIT_NOFILE, saved), Is.EqualTo(0));
        try
        {
            int open = Directory.GetFiles("/proc/self/fd").Length;
            Assert.That(DescriptorExhaustionTests.setrlimit(Interop.LibC.RLIMIT_NOFILE, [(ulong)(open + Headroom), saved[1]]), Is.EqualTo(0), "setrlimit");
            for (int i = 0; i < Clients; i++)
            {
                await clients[i].ConnectAsync(IPAddress.Loopback, app.Port, token); // completes in the backlog
                await clients[i].SendAsync(Encoding.ASCII.GetBytes("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"), token);
                responses[i] = DescriptorExhaustionTests.ReadResponseAsync(clients[i], token);
            }
            await whileSqueezed();
            return (responses, responses.Count(r => r.IsCompletedSuccessfully));
        }
        finally
        {
            DescriptorExhaustionTests.setrlimit(Interop.LibC.RLIMIT_NOFILE, saved);
            foreach (var handle in release)
                handle.Dispose();
        }
    }

    private static async Task AllServedAsync(Task<string>[] responses, int served, CancellationToken token)
    {
        await Task.WhenAll(responses).WaitAsync(TimeSpan.FromSeconds(15), token);
        Assert.That(responses.Select(r => r.Result), Is.All.EndWith("Hello, World!"),
            $"{served} served while squeezed; every client once descriptors were free");
    }
}
