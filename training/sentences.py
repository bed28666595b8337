"""Text of continuous speech for the synthetic corpus.

A spotter trained on isolated words fires on running speech, so the synthetic corpus also renders
whole sentences and paragraphs (``SENTENCES``, ``PARAGRAPHS``: keyword-free by
``training.keyword_text.is_keyword_free`` and full of the keywords' near misses, "night", "free",
"yet", "town", the hard negatives) and keywords said inside speech (``CARRIERS``: a prefix and/or
a suffix around one keyword) or in a row (``COMMAND_SEQUENCES``). Plain words and . , ? ! ' only,
so that every synthesiser reads them alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from training.keyword_text import is_keyword_free
from training.labels import SPEECH_COMMANDS_LABELS

__all__ = [
    "CARRIERS",
    "COMMAND_SEQUENCES",
    "PARAGRAPHS",
    "SENTENCES",
    "keyword_free_paragraphs",
    "keyword_free_sentences",
]

# Sentences, one per line, grouped by topic; a mix of short (five words or fewer) and long
# (fifteen words or more) ones.

# Home and household.
_HOME = """
Close the kitchen window, please.
The kettle is boiling.
Where did I put the keys?
Dinner is almost ready.
Can you pass the salt?
The sink is full again.
Let's tidy the living room.
The towels are still damp.
Please water the plants.
The fridge smells strange.
We need more soap.
The lamp in the hall flickers.
Somebody spilled the milk.
My socks are missing.
The floor feels cold this morning.
Put the dishes away when they are dry.
Could you fetch a clean spoon from the drawer?
The washing machine makes a loud noise when it spins.
I fixed the leaking tap with a new washer and a little patience.
We painted the kitchen a soft yellow last spring.
The sofa cushions need a proper wash.
There is a draft coming under the back door.
Leave your muddy boots by the door, not in the hall.
Our neighbours lent us their ladder so we could clean the gutters.
The heating starts at dawn and runs until noon.
Turn the oven dial and wait until the little light glows.
The spare blanket is in the cupboard at the end.
Somebody keeps moving the scissors from the drawer where they belong.
Please empty the bin when it is full, and put a fresh bag in.
I swept the porch, but the wind blew the leaves straight back.
The mirror in the bathroom fogs after every shower.
A mouse ran across the pantry floor and vanished behind the flour sacks.
We keep the candles and matches in the tin beside the fireplace.
The window latch is broken, so tie it with string until the weekend.
Fold the sheets neatly and stack them in the linen closet.
My grandmother still irons her handkerchiefs every Sunday.
The carpet in the hallway is worn thin near the front door.
Mind the step, it is higher than it looks.
The smoke alarm beeps when the battery is low.
Is the back gate locked?
Who didn't shut the fridge?
The laundry basket is overflowing.
Hang the coats in the hall closet.
I'll vacuum the stairs after lunch.
Have you seen my reading glasses anywhere?
The roof leaks whenever it rains heavily, so we put a bucket in the attic.
Let's move the armchair closer, so we can sit by the fire.
The cellar stays cool all summer, which is perfect when storing apples.
Our flat faces the park, and in the evening we hear children playing.
Wipe the table with a damp cloth and then dry it with a towel.
When we moved in, the kitchen had not a single cupboard, so we kept the plates in cardboard boxes all winter.
If the kettle starts whistling while I'm in the garden, could you please lift it from the stove and pour the tea?
The plumber said the pipes under the sink are very old and will need replacing sometime next year.
Every Saturday morning my brother and I clean the whole flat while our parents visit the market.
The neighbours' children were playing in the yard until late, laughing and shouting as the sun slowly set behind the hills.
She opened the window wide, let the fresh air in, and sat with a book while the rain fell softly outside.
Our landlord finally agreed that the damp patch in the hallway was his problem and sent a builder this week.
After dinner we usually sit in the lounge with a big teapot and talk about the day we had.
The electrician arrived early, checked every socket in the flat, and told us the wiring was perfectly safe.
Grandpa keeps his tools in a wooden chest in the garage and never lets anybody borrow the best hammer.
Please remember that the rubbish is collected early Thursday morning, so the bins must be at the gate the night prior.
I spent the afternoon sorting through old photographs, and found a picture showing my mother as a little girl.
The heater in the spare room makes a clicking sound, which keeps our guests awake half the night.
Last winter the pipes froze solid, and we lived without running water almost a whole week in January.
My sister insists that the sofa looks better by the window, but I think it blocks the morning light.
When the storm knocked the power out, we lit candles and played cards by the fireplace until midnight.
The new curtains arrived this morning, but they are far longer than we measured and drag across the floor.
It took the whole weekend, but we finally painted the hallway, the kitchen and the little study at the back.
"""  # noqa: E501

# Food and cooking.
_FOOD = """
The soup needs more pepper.
I'd like a cheese sandwich, please.
This bread is still warm.
Pass the butter, please.
The rice is burnt again.
Would you like some tea?
Dinner smells amazing tonight.
The milk has run out.
Try the lemon cake.
The pasta needs salt.
The chef sharpened her knife and sliced the onions thin.
Let the dough rest an hour, then knead it again.
Could we order pizza tonight instead?
I'll have the fish with a green salad.
She baked fresh bread and the whole flat smelled lovely.
The waiter brought the bill, but we were still eating dessert.
My uncle makes the best curry in the family.
Season it with salt and a little sugar.
We picked strawberries at a farm near the river.
This restaurant serves breakfast all day long.
Is there any jam in the cupboard?
The yeast made the loaf rise beautifully.
I prefer my tea with lemon and a little sugar.
Grill the peppers until the skins turn black, then peel them.
Somebody finished the last biscuit.
The tomatoes from our garden are sweet this summer.
Mix the flour and the eggs in a large bowl.
Chop the garlic finely and fry it gently in olive oil.
The cake was delicious, but far sweeter than I expected.
Our local bakery sells warm croissants every morning at dawn.
He poured the wine and raised his glass with a grin.
Breakfast is served in the dining room until ten.
Don't let the milk boil over.
The recipe says fresh basil, but dried basil works just as well.
Heat the pan, melt some butter, and fry the mushrooms until golden brown.
We slurped spicy noodles at a crowded night market in Bangkok while the rain hammered the plastic roof.
My favourite sandwich has ham, cheese, crunchy pickles and far more mustard than anybody else would like.
The farmers market sells plums, pears, apples and the sweetest peaches in town.
She sprinkled the cookies with cinnamon and set them aside while the icing cooled.
Warm porridge and a big mug filled with hot chocolate are all I need this cold morning.
The kids helped me roll the dough, cut the shapes and decorate the biscuits with sprinkles.
Whenever my aunt visits, she brings homemade plum jam and a basket filled with warm muffins.
Could you slice the bread thinner, please?
The oven timer rang just as the guests arrived at the door.
We had used the last egg, so I made banana pancakes instead.
Is the chicken cooked through yet?
The soup tastes better the next day.
I'll make a big vegetable stew and freeze half.
The melon is ripe and smells sweet.
"""  # noqa: E501

# Weather.
_WEATHER = """
It's raining again.
What a lovely morning!
The wind is freezing.
Looks like thunder.
The sky is clear tonight.
It might sleet later.
Fog covers the valley.
The sun feels warm.
Such a grey day.
The puddles are huge.
Bring an umbrella, just in case.
The heat wave should end by Friday.
A cold front is moving in from the west.
The temperature dropped sharply after sunset.
We watched lightning flash across the bay.
Hail battered the conservatory roof all afternoon.
The wind rattled the shutters all night long.
It was so humid that my shirt stuck against my back.
A rainbow appeared over the hills just after the storm passed.
The frost made the grass crunch under our feet.
Will it rain this weekend?
The morning was calm and still, without a cloud in the sky.
By late afternoon the clouds had rolled in and the temperature fell.
Heavy rain flooded the low fields near the river and closed several roads.
The storm toppled power lines across the county and thousands lost electricity.
Every spring the meadow fills with wild flowers, and the bees hum from dawn until dusk.
We sat in the garden until the last light faded, listening as the crickets sang in the long grass.
The weather service says a warm breeze will arrive Thursday, bringing clear skies and mild nights.
Thick fog rolled in from the harbour, and the ferries waited at the pier until it lifted.
The drought has lasted all summer, and the farmers are praying that the rain will arrive soon.
When the first flakes fell, the children ran outside in their pyjamas and stuck their tongues out.
Last night the temperature fell below freezing, and the windscreen was covered in thick ice this morning.
The weather in Scotland changes so fast that you can see sunshine, rain and hail within an hour.
A gentle drizzle fell all morning, and by noon the pavements were shining like glass.
The weather app promised sunshine, but it has been pouring since breakfast.
The clouds are moving fast.
A storm is brewing at sea.
The ice across the pond is thin.
It's very windy today.
The air smells like rain.
"""  # noqa: E501

# Short sentences built on the keywords' near misses (training.vocabulary.NEAR_MISSES).
_NEAR_MISS_SHORT = """
Was that a fox barking?
The fox began barking in the backyard.
It was an awkward silence.
That was an awkward moment at dinner.
The hollow log was crawling with beetles.
My fellow passengers were asleep.
He could barely swallow the pill.
Leaves fall early in the mountains.
The fire is warm.
The bees returned home, swarming around the hive.
She made a perfect dive from the high board.
Save the file and close the laptop.
The boys had a fight about a ball.
I bet it will rain.
That was a bad idea.
Fresh bread smells amazing.
She wore a red scarf.
Mind your head, the ceiling is low.
Every child wants a hero.
The zebra stood still in the tall grass.
The arrow hit the target.
They worked with great zeal.
It's an odd little town.
I painted my own bookshelf.
You can earn extra cash by tutoring.
Lean against the wall and rest a moment.
Turn the page, please.
The candle will burn all night.
The old sailor would yearn with longing whenever he smelled the sea.
My tooth aches.
That tune is stuck in my head.
Is it true?
What should we do next?
I lost a shoe in the mud.
A mouse lives behind the fridge.
The horse galloped across the field.
How did you fix it?
Coil the garden hose neatly.
Her blouse was pale blue silk.
Admission is free today.
The puppy deserves a treat.
Mint tea would be lovely.
Our trip was short but lovely.
We dug a deep hole near the fence.
The boat waits at the dock.
The children love digging in the sand.
Throw another log in the fire.
The little girl hugged her doll.
Watch your step!
The shop closes at noon.
The view from the top is amazing.
The shop sold its entire stock.
I need a stamp and an envelope.
This feels like heaven.
Several people complained about the noise.
The clock struck eleven.
Sever the rope with the knife.
An ape scaled the fence at the zoo.
I hate waiting in queues.
Sorry, I'm late again.
He hooked fresh bait and cast again.
She lifted the heavy barbell.
The town square was empty.
Her gown was pure silk.
We woke at dawn.
The brown bear slept all winter.
The lifeguard saved a boy who nearly drowned.
The sticks snapped in the fire.
Anna sits by the window.
Can you fix the tap?
Mix the paint well.
I feel sick.
He is not a coward.
They promised a reward.
The knight drew his sword.
Put your cap in the hall.
Cut the ribbon.
The baby sleeps in a cot.
Pack a first aid kit.
The bat flew out with a squeak.
That's a lovely hat.
Let's ride bikes.
The rice is sticky.
The light is dim.
The interest rate is rising.
Prices rise every year.
His vision is blurry.
As usual, he was late.
Let's visit Grandma.
This is a virtual tour.
Sweep the floor.
Use a fork.
Shut the door.
The apple is rotten at the core.
Pour the milk slowly.
They made a solemn vow.
Now is the time.
Paint the wall white.
The wound has healed.
Leave a note.
I hurt my knee.
A garden gnome guarded the path.
Neither Tom nor Anna came.
Take a nap.
What a night!
That bike is mine.
Wait in line.
Nice work!
I'm fine, thanks.
Sharpen the knife.
Let's dine at home.
I often walk there.
He has a bad cough.
The ox pulled the cart.
This pillow is soft.
I'm free at last.
Thee and thine, as the poem says.
He threw the ball.
Needle and thread, please.
The lake will freeze soon.
What a thrill!
Lift the box carefully.
We converted the loft.
Remember them, lest the memory fade.
The theft was reported immediately.
A leaf drifted past.
The marble floor is cold.
Martin plays the cello.
Scribble a note in the margin.
That bridge is a marvel.
Uncle Pete is carving the roast.
Is it ready yet?
Don't yell at me.
What a mess!
Add the yeast and stir.
Let's play chess.
Fill my cup.
Hop across the stream.
Open the weather app.
The balloon went pop.
The knight raised his shield.
Change the sheet, please.
She laughed.
We found a shelter from the rain.
He's a hippie at heart.
A red poppy grew by the road.
What will happen next?
Painting is my hobby.
The baby needs a clean nappy.
The board meeting ran late.
Not a word was spoken.
This is my third attempt.
He grew a beard.
The pipe burst.
The goat chewed the grass.
We scored a goal!
Watch the seedlings grow.
The embers still glow.
The castle has a ghost.
So what?
Red wine, please.
Run, Anna, run!
The starting gun fired.
The sun is setting.
When will she arrive?
"""

# Longer sentences that pack several near misses together.
_NEAR_MISS_LONG = """
I bet the fire in the hearth will burn all night if we throw another log in it.
The hero drew his sword, raised his shield, and rode through the town gate at dawn.
She found a note under the door saying the shop would be closed until the weekend.
The night was fine and clear, so we sat in the backyard and watched the stars rise.
Martin often visits the marble quarry, where he is carving a statue showing a horse and a goat.
Is the bread ready yet, or should I wait while the yeast does its work?
The tooth fairy hid a shiny coin under his pillow, and he told the whole class about it.
Pour the tea, cut the cake, and set a fork beside each plate at the table.
The fellow at the dock sold us fresh fish, a bag filled with ice and some bait.
When the sun sets, the whole town glows red, and the hills turn a soft brown.
The kids dug in the sand, built a moat, and watched the tide fill it with sea water.
Several people heard a gun fire near the woods, but it was just a farmer scaring crows.
The awkward silence lasted until Martin started telling jokes about his hobby, collecting antique hats.
It's a free country, she said with a shrug, and she ordered another slice, lemon tart this time.
The knife is sharp, so cut the rice cakes carefully and keep your fingers clear.
Her usual trick is hiding the chess pieces, then asking innocently if we want a game.
The zebra and the horse look similar, but the zebra has a wild streak that keepers never tame.
The horse threw its rider in the mud, and the crowd gasped, then laughed when he stood and bowed.
Leave the light burning in the hall, because the little kids hate the dark at night.
The town hall clock struck eleven, and the last few guests began drifting home.
The ghost story was so scary that the children slept with the hall light burning all night.
In the loft we found a doll, an old board game and several dusty hats.
Lift the lid slowly, because the soup is hot and the steam can burn your fingers.
The thief snatched the coins and ran, but the shop owner caught him at the corner.
Fix the shelf in the hall, mix the paint, sand the gate, and then take a well earned nap.
"""  # noqa: E501

# Travel.
_TRAVEL = """
Our train leaves at noon.
Where is platform twelve?
The flight was delayed.
Is this seat taken?
We missed the last bus.
My suitcase is very heavy.
The hotel has a lovely pool.
Passports, please.
The border queue was enormous.
Which way is the beach?
We rented a small car in Lisbon and drove along the coast, pausing in every fishing village.
The ferry crossing took several hours, and half the passengers were seasick.
When we landed in Cairo, the heat hit us like a wall as we stepped from the plane.
I always pack a book, a scarf and some snacks, because long journeys make me hungry and cold.
The guide led us through the old market, pointing at spice stalls, carpet sellers and tiny tea shops.
We hiked across the mountain pass, slept in a wooden hut, and watched the sunrise over the glacier.
The night train from Vienna was cramped, but waking in Venice made every minute worth it.
Our taxi driver in Rome knew every shortcut, and he sang opera the whole way while dodging scooters.
At the airport in Madrid, a kind stranger helped me find the correct gate with minutes remaining.
Lena and her husband spent their first summer together island hopping in Greece, sleeping in cheap rooms by the sea.
Remember that the museum closes early Sunday, so we should visit it first thing in the morning.
The youth hostel in Dublin was noisy, but we met travellers from Brazil, Kenya and Japan there.
We crossed the desert in an old jeep, and at night the sky was so clear we saw the Milky Way.
The tram in Lisbon climbs such steep hills that you marvel at how it manages without sliding back.
Could you tell me where the nearest pharmacy is?
Excuse me, does this bus call at the station?
How long is the drive from Edinburgh?
Our cabin had a view across the lake.
The receptionist gave us a map and circled the best restaurants.
Please keep your seat belt fastened while the sign is lit.
We queued a whole hour at passport control.
The road through the valley was narrow and winding.
I lost my luggage in Frankfurt last summer.
The campsite was muddy, but the stars were incredible.
She booked the tickets months in advance and saved heaps.
The pilot announced that we would land twenty minutes early.
Villagers waved at us as the bus rattled past.
We watched the sunset from the deck while the ship sailed past the cliffs.
This city is much bigger than I imagined.
The boat tour lasts about an hour.
"""  # noqa: E501

# Work and the workplace.
_WORK = """
The meeting starts at ten.
Please send me the report.
My laptop battery is dying.
Can we reschedule?
The printer is jammed again.
I'm working from home today.
The deadline is Friday.
Let's take a short break.
Who is leading the project?
The server crashed overnight.
The manager asked everybody in the team a simple question about the new schedule.
Could you share your screen so we can all see the slides?
Our team finished the quarterly review a whole week early, mostly because Priya built such clever spreadsheets.
I have a dentist appointment at half past twelve, so I will leave the meeting early.
The new intern asked brilliant questions and fixed a bug that the rest had missed.
The client called twice this morning asking when the invoice would arrive.
Please check the spreadsheet carefully, because last month the totals were wrong in several places.
We need a volunteer who can present the results at the conference in Berlin next month.
The latest software release broke the login page, so the engineers worked through the night fixing it.
I spent the whole afternoon answering emails and barely touched the budget I promised Jonathan.
In the morning, Kevin walked us through the design, and after lunch we argued about the colours.
Our company hired fifty new people this year, and the building is getting very crowded.
She asked her boss whether she could work a shorter week and spend Fridays with her kids.
The contract needs signatures from both partners, and the lawyer wants it back by Thursday evening.
If the database is slow again tomorrow, please restart the service and tell the support team.
The conference room smells like burnt toast again.
Has anybody seen the projector remote?
The boss wants the slides by tonight.
My keyboard is missing a key.
Let me check my calendar.
Thanks, that was really helpful.
I'll call you back in an hour.
We reached our sales target this quarter.
Please print a few copies.
He resigned after twelve years at the firm.
Our department is moving across the hall next week.
The training session was long, but I gained a few useful tricks.
She works night shifts at the hospital and sleeps all afternoon.
The cleaners arrive after the staff leave at night.
The job interview went better than I expected.
"""  # noqa: E501

# Technology.
_TECH = """
Restart the router.
The screen is frozen.
Is the internet working?
Charge the tablet overnight.
Plug in the charger.
My password expired.
The battery is nearly flat.
Save your work often.
The camera lens is dirty.
The speaker crackles.
The laptop fan gets very loud whenever I run several programs at the same time.
If the printer keeps jamming, pull the paper tray gently and check that nothing is stuck inside.
Our internet connection drops every evening after dinner, just when everybody starts streaming films.
I bought a new keyboard because the old keys were sticky and the space bar barely worked.
Please store the photos in the cloud, since the hard drive in this old laptop is making strange noises.
The smart speaker in the kitchen keeps mishearing my sister and plays jazz whenever she asks the time.
The engineers tested the robot arm with eggs, because an egg cracks if the grip is even slightly tight.
Scientists trained the model with a huge speech archive, and it still confuses similar words whenever a speaker mumbles.
Reboot the computer, wait a minute, and then sign in with your usual password.
The website loads slowly because the images are far larger than necessary.
My mother finally mastered video calls, and now she calls us every Sunday at lunchtime.
Our new recorder captures the fridge humming, the traffic outside and even the neighbours' television next door.
The satellite dish was knocked crooked by the storm, so the television shows nothing but grey static.
Clear the cache and reload the page.
The cable is much shorter than I thought.
Is the monitor plugged in?
This app drains the battery fast.
Type your name in the first box and your email address in the second.
The system crashes whenever several users edit the same file.
Check that the cable is firmly in the socket.
The robot vacuum got stuck under the sofa again.
Swap the earbuds around.
Is there a way we can make this code faster?
The code compiles, but the tests fail.
A small helicopter hovered above the field, filming the harvest from high in the sky.
"""  # noqa: E501

# Narrative.
_STORIES = """
The old fisherman pulled his boat across the sand, lit his pipe, and stared at the grey horizon in silence.
Not a soul in the village remembered who built the little chapel, but every spring somebody painted its door a fresh blue.
When Clara opened the letter, her hands began shaking, and she read the first line several times without understanding it.
The children crept through the empty barn, holding their breath, while the wind moaned through the cracks in the walls.
Her grandfather had been a sailor, and his stories about storms, pirates and distant islands filled every winter evening.
The detective studied the muddy footprints by the window and smiled, because at last the puzzle made sense.
Where the woods began there stood a cottage with a crooked chimney, where an old woman kept bees and goats.
The knight rode through the night, his cloak soaked with rain, hoping he would reach the castle by dawn.
Every evening the old keeper walked the spiral stairs, trimmed the wick, and watched the ships pass safely by.
Tom found a rusty key buried in the garden, and he spent the whole summer searching the village, trying every old door.
The little boat drifted all afternoon until a passing fishing crew spotted the waving sailors and pulled them aboard.
After the war, my grandmother walked all the way across the mountains, carrying her baby and a small bag.
The circus arrived in town at midnight, and by morning a striped tent stood in the meadow behind the church.
The painter worked by herself in her studio by the sea, mixing colours that matched the changing light across the water.
The thief slipped through the crowded market, but the watchful baker noticed the missing loaves and raised the alarm.
When the bell rang, the students rushed outside, laughing and pushing, eager as puppies in spring.
The mayor gave a long speech in the square, but most people were watching the pigeons squabble over crumbs.
In the old fable, a clever fox tricked a proud crow, and the crow dropped its cheese straight in the fox's mouth.
The captain studied the map by candlelight while the crew sang quietly below deck, tired but hopeful.
Emma waited at the station with flowers in her arms, scanning every face as the passengers stepped from the train.
The baker rises at dawn every morning, and by breakfast the whole neighbourhood smells his warm bread and cinnamon rolls.
The prince lost his way in the maze and wandered among the hedges until a gardener kindly showed him the exit.
In a faraway land there lived a king who loved riddles more than gold.
Later that evening, the rain eased and a thin moon appeared above the rooftops.
The stranger tipped his hat, paid in silver coins, and vanished in the fog without a word.
Rosa kept the secret all summer, but at the harvest festival she finally told her sister everything.
The ship's kitten slept by the wheel and never missed a meal.
"""  # noqa: E501

# Health, school, sport and family.
_LIFE = """
My little brother broke his arm falling from the climbing frame, and now everybody wants their signature across his cast.
The doctor told my father he should walk every day, eat less salt and get more sleep.
The nurse checked my temperature, listened as I breathed, and said it was probably just a nasty cold.
I have been coughing all week, so I finally made an appointment with the clinic near the station.
Drink water regularly, rest as much as possible, and call the surgery if the fever gets worse tonight.
My knee has been aching since the marathon, so my physio gave me some gentle stretches.
Our school choir is singing at the town hall next Friday, and the whole family has promised they will come.
The teacher asked what we would like as a career, and half the class said footballer or astronaut.
Our maths exam was much harder than the practice tests, and several students were in tears afterwards.
The library is my favourite place in the city, because it is quiet, warm and filled with surprising books.
Every Thursday evening the chess club meets in the back room at the library and plays until closing time.
My daughter practises the violin every afternoon, and the neighbours have started clapping through the wall.
When my grandparents celebrated their golden wedding, all their children and grandchildren travelled home from abroad.
Our football team lost the final in the last minute, but the fans kept singing all the way home.
She swims a mile every morning at the public pool, whatever the weather, and never seems tired.
The referee blew the whistle, the crowd roared, and the players fell in the mud, exhausted and delighted.
I started running last spring, and this autumn I finished my first half marathon without walking a single step.
The tennis match lasted the whole afternoon, and both players could barely walk at the end.
We spent Sunday afternoon at the park, feeding the ducks, flying a kite and eating ice cream.
The children built a big sandcastle at the beach and decorated it with shells, seaweed and a paper flag.
Grandma calls every Sunday and asks whether we are eating properly and wearing warm socks.
My best friend moved abroad last year, but we still talk every week and laugh just as much.
We celebrated my aunt's birthday with a picnic by the lake and a cake shaped like a sailing boat.
When the baby finally fell asleep, we tiptoed around the flat and whispered like burglars.
Our new neighbours invited the whole building round, and we stayed until long after midnight.
"""  # noqa: E501

# Small talk.
_SMALL_TALK = """
Hello, how are you?
Nice weather today.
Where have you been hiding?
What have you been doing lately?
Thanks a lot!
Sorry about that.
See you later.
Take care.
Have a lovely weekend.
Cheers, mate.
Excuse me.
Morning, everybody.
Pleased with the result?
It's been ages!
How was your holiday?
Did you sleep well?
What time is it?
Where are you from?
How is your mother?
Are you busy tonight?
That sounds great.
I'm really sorry.
Never mind.
Not bad, thanks.
Congratulations, you deserve it!
What a surprise!
Brilliant work!
Oh, really?
I'm not sure.
Maybe next time.
Let me think about it.
I completely agree.
That's a brilliant idea!
Could you repeat that?
Speak a little louder, please.
I beg your pardon?
Thank you very much.
It was lovely meeting you.
Say hello from me.
Same here.
Are you kidding?
Absolutely!
Certainly.
Frankly, I'm exhausted.
What do you mean?
Whatever you prefer.
How lovely!
Sounds like a plan.
Just a moment.
Hang in there.
Sorry I haven't called, but work has been absolutely crazy these last few weeks, and I barely sleep.
It was so kind that you remembered my birthday, especially with everything else happening in your life.
Would you join our barbecue this Saturday, out in the garden, if the weather holds?
How are the kids getting along at their new school, and have they made any new friends yet?
I ran across Daniel at the supermarket last night, and he sends you his warmest regards.
If you're ever in Glasgow again, please give me a call, and we'll grab dinner somewhere nice.
"""  # noqa: E501

# Town and city.
_CITY = """
The traffic is terrible this morning.
Where can I park?
The bakery opens early.
Cross at the lights.
The museum is free today.
Our bus is late again.
The bridge is closed.
Let's meet by the fountain.
The square was packed.
Mind the gap.
The market square fills with stalls every Saturday, selling cheese, flowers, bread and secondhand books.
Road works have closed the main bridge, so every bus takes a long detour through the industrial estate.
The new cycle lanes made the city safer, and now half my colleagues ride their bikes every day.
The old cinema in the high road became a supermarket, which made my grandfather furious.
During summer evenings the riverside fills with people eating ice cream and watching the boats drift past.
Please cross at the zebra crossing, look both ways, and hold your little brother's hand tightly.
The city council wants a new park where the old car factory stood years back.
Rents in the centre have doubled, so many young families moved away and the schools are half empty.
The night buses run every half hour, but they are usually crowded with students singing loudly.
The city centre is lovely at Christmas, with lights strung across the squares and a big skating rink.
Taxis queued outside the station while tired commuters hurried past with their umbrellas.
Our local library runs free computer classes every Wednesday afternoon, mostly attended by retired people.
The bus driver waited patiently while an elderly lady counted her coins at the front.
A busker played the accordion near the town hall, and a small crowd gathered around him.
The bakery at the corner sells the best rye bread in the whole city.
The lift in our building is broken again, so we climb all the stairs.
Pedestrians crowded the pavement.
The city never sleeps.
Sirens wailed across town.
The park gates close at dusk.
"""  # noqa: E501

# Nature and animals.
_NATURE = """
The river is very high.
Listen, the crickets are singing.
The roses are blooming.
Ducks glide across the pond.
The moon is full tonight.
A fox crossed the lane.
The hills look purple.
Squirrels bury acorns.
Bees love lavender.
The meadow smells sweet.
The waves crashed against the rocks all night, and by morning the beach was covered in seaweed.
In autumn the oaks and maples turn gold and crimson, and the whole valley looks like a painting.
Several deer wandered out from the thicket and grazed quietly where the field met the woods.
The glacier has shrunk dramatically in the last thirty years, and the guides say it may vanish entirely.
We watched wild dolphins leaping beside the boat, and all the little children screamed with delight.
The salmon swim against the current every autumn, leaping waterfalls and dodging hungry bears along the way.
Wild horses roam the moors, sheltering in the valleys when the winter storms sweep in from the sea.
The mountain erupted without warning, and ash fell like grey flour across the villages below.
Bats flitted around the barn at dusk, chasing moths above the pond.
The farmer ploughed the field while gulls wheeled and squabbled behind his tractor.
A heron stood motionless in the shallows, waiting patiently while the little fish swam closer.
The bamboo grove was so dense that the sunlight barely reached the path.
After the rain, the whole garden smelled like wet earth and freshly cut grass.
The sunflowers in the field all turned their heads and faced the morning sun.
Frogs croaked loudly in the marsh as the evening mist settled over the reeds.
The cliffs were covered with nesting gulls, and the noise was deafening.
A spider spun its web between the fence posts overnight.
Sheep grazed peacefully across the green hillside.
The lake was perfectly still at dawn.
Wild garlic carpets the woods in April.
The owl hooted twice and then fell silent.
Mushrooms sprang everywhere after the rain.
"""  # noqa: E501

# Shopping.
_SHOPPING = """
How much is this jacket?
Do you take cards?
I'm just browsing, thanks.
Is there a smaller size?
The queue is enormous.
Can I get a receipt?
These shoes pinch my toes.
The sale ends Sunday.
Could you wrap it as a gift?
I'd like a refund, please.
The supermarket was so crowded that I ditched my trolley and bought a sandwich at the kiosk instead.
She tried several dresses but bought a simple black jumper, which is what she always buys.
The shopkeeper wrapped the vase in newspaper and warned me that the handle was fragile.
We compared prices at several different shops, and the cheapest was the little place near the station.
The bookshop by the canal has a resident tortoise, a creaky staircase and a whole wall covered in maps.
My grandfather never throws anything away, so his garage is stuffed with jars, screws, radios and bicycle wheels.
Remember the shopping list, because last time you came home with crisps, chocolate and nothing else.
"""  # noqa: E501

# Questions.
_QUESTIONS = """
Why is the sky blue?
Who painted this picture?
Which train should we take?
Where does this path lead?
Is the museum open Mondays?
Did you lock the car?
Have you fed the fish?
Can you swim?
What is Peru's capital city?
Why are you laughing?
Should we bring a present?
Are we there yet?
Whose umbrella is this?
When does the film start?
Is it far from here?
Would you mind waiting outside?
What does this button do?
How tall is that mountain?
Did anybody call while I was out?
Why did the chicken cross the road?
Could you explain that again, slowly this time?
Have you ever been abroad?
Do you remember where we parked the car?
Does this lane lead along the harbour?
What would you buy with a lottery prize?
Which season do you like best, summer or winter?
Who is in charge while the manager is away?
Where did you buy such a beautiful scarf?
How many languages can your cousin speak?
Why does the milk always boil over when I turn my back?
Did you hear that strange noise in the attic last night, or was I dreaming?
If you could live anywhere in the world, which city would you choose and why?
What was that little restaurant called in Paris, the place where we had the amazing fish soup?
How did the ancient Egyptians move such enormous blocks across the desert without wheels?
Why does the kitten always sit exactly where I'm working?
Have you noticed how much quieter the neighbourhood has become since the factory closed?
Could you please explain why the train is late again, when it was late all last week?
What time does the last ferry leave the island, and is there a later bus?
How long does a letter from Australia take by ordinary mail?
Did somebody remember the candles, the matches and the cake knife, or must I run back home?
"""

# Instructions.
_INSTRUCTIONS = """
Wash your hands with warm water and soap, then dry them thoroughly with a clean towel.
Preheat the oven, grease the tin, and sift the flour twice so the sponge stays light.
Hold the ladder steady while I change the bulb in the hallway ceiling.
Read the instructions carefully, and keep the receipt in case the heater breaks.
Fasten your seat belt, check the mirrors, and signal clearly when you pull away.
Tighten each screw a little at a time, working around the wheel in a star pattern.
Rinse the brushes in warm water as soon as you finish painting, or they will harden.
Keep the medicine in a cool dry place, away from children and direct sunlight.
Sign your name at the bottom, then add the date beneath it.
Feed the goldfish a small pinch twice a day, never more, or the water turns cloudy.
"""

# Facts.
_FACTS = """
The human heart beats about a hundred thousand times every day, without a single rest.
Sunlight needs several minutes crossing the gap between the sun and the earth.
Bees talk by dancing, telling the hive where the best flowers grow.
The ancient Romans built roads, bridges and aqueducts that are still standing today.
The Great Wall in China stretches across mountains, deserts and grasslands.
Penguins cannot fly, but they are brilliant swimmers and can dive very deep.
Octopuses have blue blood, several hearts and remarkable memories.
The printing press changed Europe, making books cheaper and spreading ideas quickly.
Mount Everest grows a tiny bit every year as the continents keep pushing together.
Whales sing long, haunting songs that can travel vast distances through the ocean.
The moon lacks air and wind, so the astronauts' footprints will probably stay there unchanged, untouched by weather.
"""  # noqa: E501

# Exclamations.
_EXCLAMATIONS = """
What a fantastic view!
That was absolutely delicious!
Look how huge that wave is!
I can't believe it's finally Friday!
Careful, the plate is hot!
Hurry, the film is starting!
Oh dear, my wallet is missing!
Pleased? I'm absolutely thrilled!
What a lovely surprise!
Listen, the band is playing our song!
How clever!
Quick, grab a towel!
Brilliant, that's exactly what I needed!
"""

# Feelings, people and places.
_PEOPLE = """
I am so proud that you finished the race, even with a twisted ankle.
She felt nervous about the interview, but her voice stayed calm and steady.
He was furious when he discovered somebody had scratched his new car.
We were thrilled when the letter arrived saying Anna had earned a scholarship.
I felt a little homesick during my first weeks in the new city.
Their laughter filled the kitchen while they cooked dinner together.
Lucas was disappointed, but he smiled and shook his rival's hand.
The whole family cried with joy when the baby was born healthy.
Aisha and Jamal met at university in Manchester and married a decade later.
Professor Okafor teaches physics in Nairobi and publishes children's books in her spare time.
Ingrid drove from Oslo all the way across Sweden in a tiny electric car.
Mateo opened a taco stand in Austin, and the queue now stretches around the block.
Yuki practises calligraphy every evening in her small apartment in Kyoto.
Liam and his father restored an old sailing boat in a shed near Cork.
Fatima runs a bakery in Marrakesh that sells almond pastries and mint tea.
Hans, the retired postman, greets every family in the village by name.
Chloe is studying marine biology in Brisbane and spends weekends diving at the reef.
"""

# Everyday scenes.
_EVERYDAY = """
The bus driver waved as we ran across the square.
My cousin Rachel plays the trumpet in a jazz band.
We painted the fence white and planted lavender along the path.
The baby giggled every time the puppy licked her toes.
Our teacher reads us a chapter every Friday afternoon.
The plumber promised he would come back tomorrow morning.
The school play was a huge success this year.
I cycled along the canal as the mist lifted.
The old clock in the hall chimes every quarter hour.
She knitted a scarf in her favourite colours.
The orchestra tuned their instruments while the audience settled.
We camped beside a lake high in the Alps.
My grandfather taught me chess when I was small.
The kittens slept in a basket by the radiator.
Please lock the shed when you finish in the garden.
The gardener trimmed the hedges and raked the leaves.
Helen bakes bread every Saturday morning, whatever the weather.
The radio was playing an old song I loved as a teenager.
The museum guide explained how the pyramids were built.
We waited ages in the rain while the ferry docked.
The students cheered when the exam results were posted.
Our holiday cottage had a thatched roof and a tiny garden.
The toddler insisted that he could wear his boots in the bath.
The waiter recommended the soup and the grilled fish.
Peter repaired the bicycle chain with some old pliers.
The fireworks lit the harbour and the crowd cheered.
The violinist played so beautifully that the room fell silent.
My neighbour grows enormous pumpkins every autumn.
The hikers rested at the summit and shared their sandwiches.
A gentle breeze carried the salty smell inland.
The puppy chewed my slippers while I was at work.
The candles flickered as the wind rattled the windows.
The tea is cold already.
We walked along the beach at sunset, collecting shells.
My sister collects postcards from every city she visits.
The garden centre sells seeds, compost and clay pots.
The volunteers cleaned the beach and filled sack after sack with litter.
Mia laughed so hard that she spilled her drink.
The firefighters rescued the kitten from the drainpipe.
The jazz club in the basement stays open until dawn.
"""


def _lines(*blocks: str) -> tuple[str, ...]:
    return tuple(line.strip() for block in blocks for line in block.splitlines() if line.strip())


SENTENCES: tuple[str, ...] = _lines(
    _HOME,
    _FOOD,
    _WEATHER,
    _NEAR_MISS_SHORT,
    _NEAR_MISS_LONG,
    _TRAVEL,
    _WORK,
    _TECH,
    _STORIES,
    _LIFE,
    _SMALL_TALK,
    _CITY,
    _NATURE,
    _SHOPPING,
    _QUESTIONS,
    _INSTRUCTIONS,
    _FACTS,
    _EXCLAMATIONS,
    _PEOPLE,
    _EVERYDAY,
)
"""Keyword-free everyday sentences, each once."""

# Paragraphs of three to six sentences (about ten to thirty seconds spoken), separated by blank
# lines; a paragraph's lines are joined with spaces.
_PARAGRAPHS = """
Every Saturday morning we walk along the canal as far as the old mill. The path is muddy in winter,
but the herons never seem bothered. We usually pause at the little bakery by the lock and share a
warm pastry. Then we stroll home, tired and content.

The meeting should have lasted half an hour. Instead, it dragged through the whole afternoon,
because the team could not agree about the budget. By the end, the tea was cold and everybody was
staring at the clock. We will try again next week.

My grandmother spent her childhood in a small fishing village in the north. Her father mended nets,
and her mother sold fish at the market every morning. She still talks about the salty air, the
smell from the tar, and the gulls screaming at dawn. Whenever she visits the sea, she falls quiet
and smiles.

Preheat the oven and line a baking tray with paper. Mix the flour, butter and sugar until the dough
feels soft. Roll small balls, press them flat with a fork, and bake them until they turn golden.
Let them cool a little, then hide a few, because they vanish fast.

The storm arrived just after midnight. The wind howled around the chimney, rain lashed the windows,
and the lights flickered twice and died. We sat in the kitchen with candles, listening as the old
building creaked. By morning the garden was a mess, but everybody was safe.

Our neighbour Martin keeps bees behind his garden shed. Every summer he brings us a jar from the
hive and a long story about his bees. This year they swarmed, and he chased them across several
gardens with a cardboard box. He caught them at last, and the whole lane cheered.

The train was packed, so I stood by the door with my bag between my feet. A little boy beside me
was counting the stations aloud, very seriously. His mother kept apologising, but I didn't mind at
all. When we reached the coast, he waved at the sea as if it were an old friend.

I started painting last winter, mostly because the evenings were long and dark. At first my
pictures were muddy and strange, and the colours never matched what I saw. Slowly, with practice,
the shapes became clearer. Now I paint every weekend, and my sister has framed a few in her
hallway.

The library in our town is small but lovely in a quiet way. There is a reading room with old
leather chairs and a window that looks across the park. The librarian, Anita, remembers what every
child likes and keeps new books aside. When it rains, half the neighbourhood seems gathered there.

We reached the campsite just as the sun was setting behind the hills. Pitching the tent took far
longer than it should have, mostly because we had lost the instructions. By the time we lit the
stove, the stars were out and the air was freezing. We had soup straight from the pan and laughed
until midnight.

Please read these instructions carefully. Fill in your name and address in capital letters. Sign
the form at the bottom and add the date. Return it in the envelope provided, and keep a copy with
your records.

The market opens at dawn, when the farmers arrive with their vans. By breakfast time, the stalls
are piled with fruit, cheese, bread and flowers. The best peaches always sell first, so my mother
gets there early. She chats with every stall holder and comes home with far more than she planned.

Last spring my brother decided he would run a marathon. He had never run further than the bus
shelter, so we all laughed. But he trained every morning, in wind and rain, without missing a
single day. When he crossed the finish line, our whole family was there, cheering and crying.

The hotel was nothing special, but the view was astonishing. From our balcony we could see the
whole bay, the fishing boats and the harbour wall at the point. Every evening the sky turned pink
and gold, and the water went completely still. We spent most nights sitting there, just watching.

Our car failed at the worst possible moment, halfway across the mountains in the rain. The engine
made a horrible grinding noise and then fell silent. A farmer in a battered truck towed us as far
as the next village. The mechanic there fixed it by evening and refused any payment except a
handshake.

When I was small, my father and I built a kite from newspaper, string and bamboo sticks. It was
lopsided and heavy, and everybody said it would never fly. We carried it high along the cliff path
anyway. When the wind caught it, the kite soared, and my father shouted like a child.

The new cafe by the station serves the best breakfast in the city. The eggs are fresh, the bread is
baked in the back, and the tea comes in huge mugs. It is always crowded at weekends, so we arrive
early. The owner, a cheerful Italian named Paolo, greets every customer by name.

Rain fell all day, so the children built a den in the living room. They dragged every cushion from
the sofa, draped blankets over the chairs, and crawled inside with torches. All afternoon they
whispered and giggled in there. When dinner was ready, they refused at first and then asked if they
could eat in the den.

The museum has a whole hall filled with dinosaur skeletons. The biggest reaches almost all the way
across the ceiling, and its teeth are as long as my hand. My nephew stood beneath it in silence,
his mouth wide open. Later he said it was the best day in his whole life.

I lost my wallet at the market last Thursday. I searched every pocket, retraced my steps, and asked
at every stall. Just as I was losing hope, a teenage girl ran after me holding it. Everything was
still inside, and she refused the reward I tried giving her.

Our school garden started as a muddy patch behind the gym. The pupils dug the soil, planted beans
and lettuce, and built a little shed from recycled wood. Now the garden supplies the school kitchen
with salad all summer. The children are very proud, and they guard the strawberries fiercely.

The hike looked easy when we checked the map, but the trail was steep and rocky. We scrambled
through pine woods, crossed a rushing stream, and finally reached a ridge above the clouds. The
view was breathtaking, with peaks stretching in every direction. We had our sandwiches in silence,
amazed and speechless.

The power cut lasted the whole evening. At first it felt like an adventure, and we played cards by
candlelight. After a while the flat grew cold, and we wrapped ourselves in blankets. When the
lights finally flickered back, everybody cheered, and then we all felt slightly disappointed.

My uncle Raj has driven a taxi in London since he was a young man. He remembers every shortcut,
every traffic light and every bakery that opens early. Passengers tell him their secrets, he says,
because they assume they will never meet him again. He has a thousand stories, and most are
probably true.

Ladies and gentlemen, welcome aboard this evening service. We expect a smooth journey, although
there may be some turbulence as we cross the mountains. Please keep your seat belt fastened while
the sign is lit. The cabin crew will shortly be serving drinks and a light meal.

The village fair takes place every August in the meadow by the church. There are stalls selling jam
and knitted hats, a brass band, and a rope pulling contest between the farmers and the fishermen.
Children race sacks across the grass while their parents cheer. In the evening, lanterns hang from
the branches and everybody dances.

The first week in a new job is always strange. You smile at everybody, muddle their names, and keep
getting lost in the corridors. Slowly the faces become familiar and the building makes sense. By
the second month, you are the person showing the newcomers around.

We adopted an old collie from the shelter last year. He was nervous at first, hiding behind the
sofa whenever the doorbell rang. Now he greets every visitor with a wagging tail and a hopeful
look. He sleeps by the stairs, snoring loudly, and guards us all.

The recipe has been in our family longer than anybody can remember. My great aunt wrote it in
pencil inside a battered notebook, and the page is stained with butter. Every Christmas, my mother
reads it aloud while we measure the flour. The cake never tastes quite the same, but we love it
anyway.

Welcome, everybody, and thank you all very much, it is lovely seeing you here. Tonight we celebrate
thirty years since this little theatre opened its doors. Many people in this room have acted here,
painted the scenery or sold tickets at the door. Without you, the curtain would never have risen.

The ferry sailed at dawn, and the sea was calm and grey. Gulls trailed the boat a while, then tired
and drifted back. Halfway across, dolphins appeared beside the bow. Every passenger rushed outside,
and the whole deck fell silent.

My daughter asked me why the sky is blue, and I realised I had not the faintest idea. We found a
book at the library and read about light and air together. Sunlight holds many colours, and the air
spreads the blue light around most strongly. She was delighted and explained it all at dinner.

Our old car has carried us across half the continent. It has a dent in the door, a radio that just
plays static, and seats that smell faintly damp. The mechanic says it should retire. We keep
promising that this summer will be the last trip, but we never mean it.

The old bakery at the corner closed last month, after decades in the same family. The owner, Mario,
said his hands were tired and his children had other plans. When the final day came, a queue
stretched around the block. People brought flowers, cards and photographs, and Mario cried as he
handed out the last loaves.

Our flight was cancelled because the fog was so thick. The airport filled with stranded travellers
sleeping across chairs and eating crisps. We found a quiet corner, shared a chocolate bar, and
played word games with a family from Portugal. By dawn the fog had lifted, and we had become the
closest friends in the whole terminal.

The garden looks wild this year, and I rather like it. The roses crept across the fence, poppies
sprang among the vegetables, and the grass grew tall enough that the children hide in it. Bees and
butterflies visit all day. My neighbour thinks it is a mess, but the wildlife clearly disagrees.

I spent the weekend repainting the kitchen, which was harder than I expected. First I moved the
table, the chairs and the fridge, then I washed the walls and covered the floor with sheets. The
paint dried much darker than it looked in the tin. I still rather like it, although my husband
calls it the cave.

Emma and Sam moved from Glasgow in the winter and opened a little bookshop by the harbour. They
sell secondhand novels, maps and a few postcards painted by local artists. In the evenings, they
host poetry readings with tea and biscuits. Slowly, the shop has become the beating heart in the
neighbourhood.

Thank you very much, your call is important. Our lines are busy at the moment, but please hold and
an assistant will answer shortly. You can also check our website, which lists opening hours and
prices. We apologise that you have been kept waiting.

Whales are the largest animals that have ever lived. The blue whale can grow longer than a tennis
court, and its heart is as big as a small car. Despite their enormous bodies, they feed mostly by
filtering tiny shrimp from the water. Their songs can travel across entire oceans.

The coach gathered the team in the changing room at half time. They were losing badly, and several
players had clearly lost heart. She did not shout. She just reminded them how hard they had trained
all winter, and then she sent them back out. They snatched victory in the final minute.

Every winter evening at dusk, huge flocks gather above the old pier. Countless starlings swirl and
twist in great dark clouds, changing shape every second. Crowds line the promenade, simply watching
in silence. Then, suddenly, the whole flock dives and vanishes beneath the boards.

When my grandfather retired, he decided he would finally build a boat. He filled the garage with
planks, clamps and varnish tins, and worked there every day. It took him several years, and my
grandmother swore it would never float. Last summer he launched it in the bay, and it sailed
beautifully.

The night shift at the hospital is strangely peaceful. The corridors are dim, the patients mostly
sleep, and the nurses move quietly between the wards. In the small hours, somebody always brews a
big pot and shares biscuits. Then the sun rises, the day staff arrive, and the noise begins again.

Dear neighbours, our summer party will take place next Saturday in the park. Please bring a dish
and a blanket, and a chair if you can carry it. There will be music, games and a raffle with prizes
donated by local shops. All proceeds will help the children's playground.

This morning the radio announced that the bridge would close all week while workers mend it. Half
the town now crosses the river by ferry, and the queues are enormous. The ferry captain seems
delighted and chats with every passenger. Some commuters say they will miss the boat when the
bridge reopens.

My first attempt at sourdough was a disaster. The loaf was flat as a pancake and hard as a brick.
My second attempt was slightly better, and after a month, I was proud. Now I bake every weekend,
and the neighbours have started dropping by at exactly the perfect moment.
"""

PARAGRAPHS: tuple[str, ...] = tuple(
    " ".join(part.split()) for part in _PARAGRAPHS.split("\n\n") if part.strip()
)
"""Keyword-free paragraphs of continuous speech."""

# (prefix, suffix) around a keyword, spoken "prefix KEYWORD suffix"; either side may be empty, not
# both. Each side is keyword-free, so the placed keyword is the only one in the phrase.
CARRIERS: tuple[tuple[str, str], ...] = (
    # Voice commands: wake words, politeness, sequencing, delivery.
    ("computer", ""),
    ("okay lights", ""),
    ("please", ""),
    ("", "please"),
    ("then", ""),
    ("and then", ""),
    ("now", ""),
    ("", "now"),
    ("", "then"),
    ("and now", ""),
    ("computer, please", ""),
    ("okay computer", ""),
    ("hey computer", "now"),
    ("hello computer", "please"),
    ("okay lights,", "please"),
    ("lights", ""),
    ("hey robot", ""),
    ("robot,", "now"),
    ("", "again"),
    ("", "again please"),
    ("then say", ""),
    ("first say", ""),
    ("and then say", ""),
    ("now say", ""),
    ("when I say", ""),
    ("okay,", ""),
    ("okay,", "please"),
    ("please,", "now"),
    ("", "thanks"),
    ("", "thank you"),
    ("", "if you please"),
    ("", "okay"),
    ("", "and wait"),
    ("", "and then wait"),
    ("", "and then pause"),
    ("", "quickly"),
    ("", "slowly"),
    ("", "louder"),
    ("", "and stay there"),
    ("", "over"),
    ("", "over and out"),
    # Quoted or reported speech: the keyword is the word being talked about.
    ("the word is", ""),
    ("please say", "again"),
    ("I think she said", "just then"),
    ("please say", ""),
    ("say", ""),
    ("just say", ""),
    ("say the word", ""),
    ("did you say", ""),
    ("I said", ""),
    ("she said", ""),
    ("he said", ""),
    ("he shouted", ""),
    ("she whispered", ""),
    ("they kept saying", ""),
    ("I heard somebody say", ""),
    ("the next word is", ""),
    ("the last word was", ""),
    ("the answer is", ""),
    ("the answer was", ""),
    ("the command is", ""),
    ("the password is", ""),
    ("the secret word is", ""),
    ("my favourite word is", ""),
    ("the card says", ""),
    ("the sign said", ""),
    ("repeat after me,", ""),
    ("listen carefully,", ""),
    ("and the winner is", ""),
    ("I'm pretty sure she said", ""),
    ("the teacher said", "clearly"),
    ("she said", "twice"),
    ("he said", "quietly"),
    ("I think he said", ""),
    ("I'm sure she said", ""),
    ("I could swear she said", "earlier"),
    ("say", "slowly"),
    ("say", "clearly"),
    ("please say", "louder"),
    ("please repeat", ""),
    ("just say", "and wait"),
    ("can you say", ""),
    ("could you say", "please"),
    ("did she say", ""),
    ("did he really say", ""),
    ("I told him", ""),
    ("the robot heard", ""),
    ("the speaker heard", ""),
    ("the app heard", ""),
    ("the assistant heard", ""),
    ("the child shouted", ""),
    ("the parrot squawked", ""),
    ("she whispered", "softly"),
    ("the parrot kept saying", ""),
    ("the kids yelled", ""),
    ("the machine said", ""),
    ("the voice said", ""),
    ("I heard", ""),
    # The keyword first, then a comment on it.
    ("", "is what I heard"),
    ("", "was the word"),
    ("", "was the answer"),
    ("", "is the password"),
    ("", "is my answer"),
    ("", "is the command"),
    ("", "she said"),
    ("", "he said"),
    ("", "I said"),
    ("", "they shouted"),
    ("", "said the teacher"),
    ("", "said the voice"),
    ("", "he whispered"),
    ("", "was all she said"),
    ("", "is the word we need"),
    # A filler or a conjunction, then the keyword.
    ("well,", ""),
    ("um,", ""),
    ("and", ""),
    ("or", ""),
    ("but", ""),
    ("so", ""),
    ("yeah,", ""),
)

COMMAND_SEQUENCES: tuple[tuple[str, ...], ...] = (
    # Moving a robot, a toy car or a game character.
    ("go", "left"),
    ("go", "right"),
    ("go", "forward"),
    ("go", "backward"),
    ("go", "up"),
    ("go", "down"),
    ("go", "left", "stop"),
    ("go", "right", "stop"),
    ("go", "forward", "five"),
    ("go", "backward", "two"),
    ("left", "three"),
    ("right", "four"),
    ("forward", "six"),
    ("backward", "one"),
    ("up", "two"),
    ("down", "six"),
    ("up", "up", "down"),
    ("left", "left", "right"),
    ("no", "stop"),
    ("stop", "go"),
    ("yes", "go"),
    # Lights, screens and switches.
    ("on", "off"),
    ("visual", "on"),
    ("visual", "off"),
    ("house", "on"),
    ("house", "off"),
    ("bed", "off"),
    ("tree", "on"),
    ("yes", "on"),
    ("no", "off"),
    # Names and pets.
    ("follow", "marvin"),
    ("follow", "sheila"),
    ("marvin", "stop"),
    ("marvin", "go", "left"),
    ("sheila", "go", "right"),
    ("sheila", "yes"),
    ("marvin", "no"),
    ("dog", "down"),
    ("dog", "stop"),
    ("dog", "follow"),
    ("cat", "down"),
    ("bird", "up"),
    ("wow", "happy", "dog"),
    ("happy", "bird"),
    # Numbers: counts, codes and channels.
    ("one", "two", "three"),
    ("seven", "eight", "nine"),
    ("four", "five", "six"),
    ("three", "two", "one"),
    ("zero", "zero", "seven"),
    ("nine", "one", "one"),
    ("two", "zero"),
    ("eight", "five"),
    ("learn", "seven"),
    ("learn", "visual"),
    ("yes", "nine"),
    ("no", "zero"),
)
"""Keywords said as one command, word by word with short pauses."""


def keyword_free_sentences(keywords: Iterable[str] = SPEECH_COMMANDS_LABELS) -> tuple[str, ...]:
    """The sentences that say none of ``keywords`` (today all of them; the filter is the safety
    net when the sentences or the filter change)."""
    keywords = tuple(keywords)
    return tuple(s for s in SENTENCES if is_keyword_free(s, keywords))


def keyword_free_paragraphs(keywords: Iterable[str] = SPEECH_COMMANDS_LABELS) -> tuple[str, ...]:
    """The paragraphs that say none of ``keywords``."""
    keywords = tuple(keywords)
    return tuple(p for p in PARAGRAPHS if is_keyword_free(p, keywords))
